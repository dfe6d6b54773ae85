"""One-off studies: each answered a question whose answer is in benchmarks/RESULTS.md, which cites
the commit its numbers came from. Kept runnable, to rerun a study or start the next one from it."""

"""Sample quality of the image-synthesis variants on MNIST, with one fixed step budget.

Trains gan, dcgan, cgan, infogan, wgan, wgan_gp, lsgan, began and began_cs (BEGAN with the
BEGAN-CS latent constraint, `model.began.constrained=true`) on the shared MNIST test split (10,000
digits, 32x32) through the pipeline's own stages (prepare -> train -> evaluate), then reports per
variant and seed the evaluation's primary metric (FID in the evaluation classifier's feature
space), the digits covered (2% of the samples per class), cgan's label accuracy and InfoGAN's
matched accuracy (its categorical code matched one-to-one to the classifier's digits, the
paper's score). Writes benchmarks/out/quality.json (rewritten after every finished run, so a
run cut short still leaves what finished) and one sample sheet per row to docs/img/<row>.png,
and prints a markdown table.

    nice -n 10 .venv/bin/python -m benchmarks.quality                  # everything, CPU: ~2 h on 2 cores
    .venv/bin/python -m benchmarks.quality --variants cgan --steps 200  # a quick look
    .venv/bin/python -m benchmarks.quality --variants began began_cs --seeds 0 1 2  # seed dependence
    python -m benchmarks.quality --device cuda --cuda-graphs --jobs 9   # one GPU

Each run is its own process with one torch thread (--jobs at once): on a 2-core machine that
others share, one thread per process is several times faster than two. Training runs under
bf16 autocast (`train.amp=bf16`, the product's own option); `--amp off` trains in fp32.
`--cuda-graphs` replays each training step as one CUDA graph (`train.cuda_graphs`) for every
variant that can be captured (not BEGAN: its k_t and lr schedule live on the host).

Every variant keeps its paper's hyper-parameters (losses, optimisers, n_critic, ...); the network
widths are narrowed (common.BENCH_MODEL) so the whole run fits a small CPU (InfoGAN's default nets
are the paper's MNIST nets, whose widths are fixed). All variants see the same number of
generator steps and the same batch size; the WGANs' critics take n_critic batches per step, as
their papers prescribe. InfoGAN is held to the issue's 0.95 matched accuracy at this budget (the
issue asks it of two seeds in three: run `--seeds 0 1 2` and count; each seed below is listed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import time
from pathlib import Path

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.files import atomic_write_text

# Rows beyond the plain variants: name -> (variant, extra overrides).
CONFIGS: dict[str, tuple[str, list[str]]] = {"began_cs": ("began", ["model.began.constrained=true"])}
ROWS = [*common.QUALITY_VARIANTS, *CONFIGS]
# Relative cost of one step with the widths of common.BENCH_MODEL (measured on CPU): schedules the jobs.
COST = {"gan": 0.3, "dcgan": 1, "cgan": 1, "infogan": 7, "lsgan": 1, "wgan": 2.5, "wgan_gp": 3, "began": 3.5,
        "began_cs": 3.6}
NO_GRAPHS = {"began", "began_cs"}  # host-side k_t and lr schedule: train.cuda_graphs refuses them

# The issues' targets, per row. BEGAN is held to none: at the paper's settings it ends on one
# digit on MNIST (README); BEGAN-CS must keep 9 of 10 digits.
ALL_DIGITS = {"mode_coverage": 1.0}
TARGETS: dict[str, dict[str, float]] = {
    "gan": ALL_DIGITS, "dcgan": ALL_DIGITS, "cgan": {**ALL_DIGITS, "label_accuracy": 0.95},
    "infogan": {**ALL_DIGITS, "infogan_code_accuracy": 0.95},
    "wgan": ALL_DIGITS, "wgan_gp": ALL_DIGITS, "lsgan": ALL_DIGITS, "began": {},
    "began_cs": {"mode_coverage": 0.9},
}
# The sheets that show what the variant is for: cgan a class per row; infogan a categorical code
# per row with c1 from -2 to 2 across (the paper's figure 2); others: samples.png.
SHEETS = {"cgan": "classes.png", "infogan": "traversal_c1.png"}


def parse_args(argv=None) -> argparse.Namespace:
    p = common.quality_parser(__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=ROWS, choices=ROWS, metavar="ROW",
                   help=f"rows to train: {', '.join(ROWS)}")
    p.add_argument("--out", type=Path, default=common.OUT / "quality.json")
    p.add_argument("--sheets", type=Path, default=common.REPO / "docs" / "img")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs trained at once, each in its own process (one per CPU core)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="train every row once per seed (one table row each): shows how much a "
                        "result depends on the seed; sample sheets come from the first")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="train.cuda_graphs=true for every row that can be captured (CUDA only)")
    return p.parse_args(argv)


def row_config(row: str, args: argparse.Namespace, work: Path, runs: Path):
    """The benchmark config of one row; a CONFIGS row trains in a folder of its own (its
    checkpoints would otherwise meet the plain variant's)."""
    variant, extra = CONFIGS.get(row, (row, []))
    graphs = ["train.cuda_graphs=true"] if args.cuda_graphs and row not in NO_GRAPHS else []
    row_args = argparse.Namespace(**{**vars(args), "overrides": [*args.overrides, *extra, *graphs]})
    return common.quality_config(variant, row_args, work, runs / row if row in CONFIGS else runs)


def run_row(row: str, args: argparse.Namespace, work: Path, runs: Path, sheets: bool = True) -> dict:
    torch.set_num_threads(args.threads)  # also in worker processes
    cfg = row_config(row, args, work, runs)
    t0, c0 = time.perf_counter(), time.process_time()
    result = stages.train(cfg, track=False)
    t1, c1 = time.perf_counter(), time.process_time()
    metrics = stages.evaluate(cfg, result.checkpoint, track=False)
    if cfg.variant == "infogan":
        from ganzoo.evaluation.classifier import get_classifier

        device = common.resolve_device(args.device)
        classifier, _ = get_classifier(stages.load_data(cfg), cfg.eval, device)
        scores = common.infogan_code_scores(result.checkpoint, classifier, device, seed=cfg.eval.seed)
        metrics.setdefault("infogan_code_accuracy", scores.pop("matched_accuracy"))  # the evaluation's own
        metrics["infogan_codes"] = scores
    t2 = time.perf_counter()
    if sheets:
        sheet = Path(cfg.eval.out_dir) / cfg.variant / "sheets" / SHEETS.get(row, "samples.png")
        common.keep_sheet(sheet, args.sheets, row)
    last = result.history[-1] if result.history else {}
    return {"variant": row, "seed": args.seed, "steps": result.steps, "train_s": round(t1 - t0, 1),
            "train_cpu_s": round(c1 - c0, 1), "eval_s": round(t2 - t1, 1),
            "model": common.BENCH_MODEL[cfg.variant], "extra": CONFIGS.get(row, (row, []))[1],
            "final_losses": {k: v for k, v in last.items() if k != "step"}, "metrics": metrics}


def table(rows: list[dict]) -> str:
    """The README's quality table (a seed per row when several seeds ran)."""
    fmt = common.fmt
    multi_seed = len({r["seed"] for r in rows}) > 1
    lines = ["| variant | fid_classifier | precision | recall | modes covered | label acc. (cgan) "
             "| matched acc. (infogan) | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["metrics"]
        name = r["variant"] + (f" (seed {r['seed']})" if multi_seed else "")
        lines.append(f"| {name} | {fmt(m.get(m.get('primary_metric', 'fid_classifier')), 1)} | "
                     f"{fmt(m.get('precision_classifier'))} | {fmt(m.get('recall_classifier'))} | "
                     f"{m.get('modes_covered', 0):.0f}/10 | {fmt(m.get('label_accuracy'))} | "
                     f"{fmt(m.get('infogan_code_accuracy'))} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def began_cs_verdict(rows: list[dict]) -> str | None:
    """BEGAN-CS against its target: digits covered per seed, and FID against plain BEGAN's best."""
    cs = [r for r in rows if r["variant"] == "began_cs"]
    plain = [r["metrics"]["fid_classifier"] for r in rows if r["variant"] == "began"]
    if not cs:
        return None
    covered = ", ".join(f"seed {r['seed']}: {r['metrics'].get('modes_covered', 0):.0f}/10" for r in cs)
    fids = ", ".join(f"{r['metrics']['fid_classifier']:.1f}" for r in cs)
    best = f"; plain BEGAN's best {min(plain):.1f}" if plain else ""
    return f"began_cs digits covered ({covered}); FID {fids}{best}"


def summary(args: argparse.Namespace, seeds: list[int], rows: list[dict], wall: float, partial: bool) -> dict:
    misses = [m for r in rows for m in common.target_misses([(f"{r['variant']} (seed {r['seed']})", r["metrics"])],
                                                            TARGETS.get(r["variant"], {}))]
    return {"dataset": "mnist test split (10,000 images)", "image_size": args.image_size, "steps": args.steps,
            "batch_size": args.batch_size, "threads": args.threads, "device": args.device, "amp": args.amp,
            "cuda_graphs": args.cuda_graphs, "seeds": seeds, "overrides": args.overrides,
            "eval_samples": args.eval_samples, "wall_s": round(wall, 1), "partial": partial,
            "machine": common.machine(common.resolve_device(args.device)), "targets": TARGETS,
            "target_misses": misses, "began_cs": began_cs_verdict(rows), "variants": rows}


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = args.seeds or [args.seed]
    torch.set_num_threads(args.threads)
    if missing := common.mnist_missing(args.mnist_root):
        print(f"{missing}; pass --mnist-root", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with common.prepared_work(args, CONFIGS.get(args.variants[0], (args.variants[0], []))[0]):
        # Slowest first, so parallel jobs finish close together.
        order = sorted(args.variants, key=lambda v: -COST.get(v, 1))
        done: dict[tuple[str, int], dict] = {}
        spawn = multiprocessing.get_context("spawn")  # no fork of a process that already ran torch ops
        with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=spawn) as pool:
            futures = {}
            for seed in seeds:
                seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
                runs = args.work / f"seed-{seed}" if len(seeds) > 1 else args.work
                for v in order:
                    futures[pool.submit(run_row, v, seed_args, args.work, runs, seed == seeds[0])] = (v, seed)
            for fut in concurrent.futures.as_completed(futures):
                r = done[futures[fut]] = fut.result()
                m = r["metrics"]
                print(f"[quality] {r['variant']} (seed {r['seed']}): {r['train_s']:.0f}s train, {r['eval_s']:.0f}s "
                      f"eval, {m.get('primary_metric')}={m.get(m.get('primary_metric'))}, "
                      f"modes covered {m.get('modes_covered', 0):.0f}/10", flush=True)
                # Atomically, after every run: a run cut short by a time limit keeps what finished.
                finished = [done[k] for k in sorted(done, key=lambda k: (ROWS.index(k[0]), k[1]))]
                partial = summary(args, seeds, finished, time.perf_counter() - start, True)
                atomic_write_text(args.out, json.dumps(partial, indent=2) + "\n")
        rows = [done[v, seed] for v in args.variants for seed in seeds]
    result = summary(args, seeds, rows, time.perf_counter() - start, False)
    common.report(args, result, table(rows))
    if result["began_cs"]:
        print(result["began_cs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

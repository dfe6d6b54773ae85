"""Sample quality of the image-synthesis variants on MNIST, with one fixed step budget.

Trains gan, dcgan, cgan, infogan, wgan, wgan_gp, lsgan and began on the shared MNIST test split
(10,000 digits, 32x32) through the pipeline's own stages (prepare -> train -> evaluate), then
reports per variant the evaluation's primary metric (FID in the evaluation classifier's feature
space), the share of the ten digits covered, cgan's label accuracy and infogan's categorical
code accuracy (one-to-one code->class matching), against the targets of issue 3. Writes
benchmarks/out/quality.json and one sample sheet per variant to docs/img/<variant>.png, and
prints a markdown table.

    nice -n 10 .venv/bin/python -m benchmarks.quality                  # everything: ~70 min, 2 CPU cores
    .venv/bin/python -m benchmarks.quality --variants cgan --steps 200  # a quick look
    .venv/bin/python -m benchmarks.quality --variants infogan --seeds 0 1 2 3  # seed dependence

Two variants train at once (--jobs 2), each in its own process with one torch thread: on a
2-core machine that others share, one thread per process is several times faster than two.
Training runs under bf16 autocast (`train.amp=bf16`, the product's own option): on a CPU with
AMX bf16 units that was 1.8x faster than fp32 here (BEGAN, 200 steps: 27 s -> 15.5 s, the same
losses to two digits); `--amp off` trains in fp32.

Every variant keeps its paper's hyper-parameters (losses, optimisers, n_critic, ...); the network
widths are narrowed (common.BENCH_MODEL) so the whole run fits a small CPU. All variants see the same
number of generator steps and the same batch size; the WGANs' critics take n_critic batches per
step, as their papers prescribe.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
import time
from pathlib import Path

import torch

from benchmarks import common
from ganzoo import stages

# Relative cost of one step with the widths of common.BENCH_MODEL (measured on CPU): schedules the jobs.
COST = {"gan": 0.3, "dcgan": 1, "cgan": 1, "infogan": 1.2, "lsgan": 1, "wgan": 2.5, "wgan_gp": 3, "began": 3.5}

# infogan: the categorical code's accuracy under a one-to-one code->class matching, as the paper scores it
TARGETS = {"label_accuracy": 0.95, "infogan_code_accuracy": 0.8, "mode_coverage": 1.0}
SHEETS = {"cgan": "classes.png"}  # the class-per-row sheet shows the conditioning; others: samples.png


def parse_args(argv=None) -> argparse.Namespace:
    p = common.quality_parser(__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=common.QUALITY_VARIANTS, choices=common.QUALITY_VARIANTS)
    p.add_argument("--out", type=Path, default=common.OUT / "quality.json")
    p.add_argument("--sheets", type=Path, default=common.REPO / "docs" / "img")
    p.add_argument("--jobs", type=int, default=2,
                   help="variants trained at once, each in its own process (one per CPU core)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="train every variant once per seed (one table row each): shows how much a "
                        "result depends on the seed; sample sheets come from the first")
    return p.parse_args(argv)


def run_variant(variant: str, args: argparse.Namespace, work: Path, runs: Path, sheets: bool = True) -> dict:
    torch.set_num_threads(args.threads)  # also in worker processes
    cfg = common.quality_config(variant, args, work, runs)
    t0, c0 = time.perf_counter(), time.process_time()
    result = stages.train(cfg, track=False)
    t1, c1 = time.perf_counter(), time.process_time()
    metrics = stages.evaluate(cfg, result.checkpoint, track=False)
    t2 = time.perf_counter()
    if sheets:
        sheet = runs / "eval" / variant / "sheets" / SHEETS.get(variant, "samples.png")
        common.keep_sheet(sheet, args.sheets, variant)
    last = result.history[-1] if result.history else {}
    return {"variant": variant, "seed": args.seed, "steps": result.steps, "train_s": round(t1 - t0, 1),
            "train_cpu_s": round(c1 - c0, 1), "eval_s": round(t2 - t1, 1),
            "model": common.BENCH_MODEL[variant], "final_losses": {k: v for k, v in last.items() if k != "step"},
            "metrics": metrics}


def table(rows: list[dict]) -> str:
    """The README's quality table (a seed per row when several seeds ran)."""
    fmt = common.fmt
    multi_seed = len({r["seed"] for r in rows}) > 1
    lines = ["| variant | fid_classifier | precision | recall | modes covered | label acc. (cgan) "
             "| code acc. (infogan) | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["metrics"]
        name = r["variant"] + (f" (seed {r['seed']})" if multi_seed else "")
        lines.append(f"| {name} | {fmt(m.get(m.get('primary_metric', 'fid_classifier')), 1)} | "
                     f"{fmt(m.get('precision_classifier'))} | {fmt(m.get('recall_classifier'))} | "
                     f"{m.get('modes_covered', 0):.0f}/10 | {fmt(m.get('label_accuracy'))} | "
                     f"{fmt(m.get('infogan_code_accuracy'))} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = args.seeds or [args.seed]
    torch.set_num_threads(args.threads)
    if missing := common.mnist_missing(args.mnist_root):
        print(f"{missing}; pass --mnist-root", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with common.prepared_work(args, args.variants[0]):
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
                    futures[pool.submit(run_variant, v, seed_args, args.work, runs, seed == seeds[0])] = (v, seed)
            for fut in concurrent.futures.as_completed(futures):
                r = done[futures[fut]] = fut.result()
                m = r["metrics"]
                print(f"[quality] {r['variant']} (seed {r['seed']}): {r['train_s']:.0f}s train, {r['eval_s']:.0f}s "
                      f"eval, {m.get('primary_metric')}={m.get(m.get('primary_metric'))}, "
                      f"modes covered {m.get('modes_covered', 0):.0f}/10", flush=True)
        rows = [done[v, seed] for v in args.variants for seed in seeds]
    wall = time.perf_counter() - start
    misses = common.target_misses(((f"{r['variant']} (seed {r['seed']})", r["metrics"]) for r in rows), TARGETS)
    common.report(args, {"dataset": "mnist test split (10,000 images)", "image_size": args.image_size,
                         "steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
                         "device": args.device, "amp": args.amp, "seeds": seeds, "overrides": args.overrides,
                         "eval_samples": args.eval_samples, "wall_s": round(wall, 1), "targets": TARGETS,
                         "target_misses": misses, "variants": rows}, table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

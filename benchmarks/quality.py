"""Sample quality of the image-synthesis variants on MNIST, with one fixed step budget.

Trains gan, dcgan, cgan, infogan, wgan, wgan_gp, lsgan and began on the shared MNIST test split
(10,000 digits, 32x32) through the pipeline's own stages (prepare -> train -> evaluate), then
reports per variant the evaluation's primary metric (FID in the evaluation classifier's feature
space), the share of the ten digits covered, cgan's label accuracy and infogan's categorical
purity, against the targets of issue 3. Writes benchmarks/out/quality.json and one sample sheet
per variant to docs/img/<variant>.png, and prints a markdown table.

    nice -n 10 .venv/bin/python benchmarks/quality.py                 # everything: ~70 min, 2 CPU cores
    .venv/bin/python benchmarks/quality.py --variants cgan --steps 200  # a quick look
    .venv/bin/python benchmarks/quality.py --variants infogan --seeds 0 1 2 3  # seed dependence

Two variants train at once (--jobs 2), each in its own process with one torch thread: on a
2-core machine that others share, one thread per process is several times faster than two.
Training runs under bf16 autocast (`train.amp=bf16`, the product's own option): on a CPU with
AMX bf16 units that was 1.8x faster than fp32 here (BEGAN, 200 steps: 27 s -> 15.5 s, the same
losses to two digits); `--amp off` trains in fp32.

Every variant keeps its paper's hyper-parameters (losses, optimisers, n_critic, ...); the network
widths are narrowed (BENCH_MODEL) so the whole run fits a small CPU. All variants see the same
number of generator steps and the same batch size; the WGANs' critics take n_critic batches per
step, as their papers prescribe.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from ganzoo import stages  # noqa: E402
from ganzoo.config import load_config  # noqa: E402

VARIANTS = ["gan", "dcgan", "cgan", "infogan", "wgan", "wgan_gp", "lsgan", "began"]

# Narrow nets: MNIST at 32x32 needs little capacity, and the budget is a shared 2-core CPU.
BENCH_MODEL: dict[str, dict] = {
    "gan": {},  # the MLP's default width is cheap already
    "dcgan": {"ngf": 32, "ndf": 32},
    "cgan": {"ngf": 32, "ndf": 32},
    "infogan": {"ngf": 32, "ndf": 32},
    "wgan": {"ngf": 16, "ndf": 16},  # n_critic 5: five critic updates per step
    "wgan_gp": {"ngf": 16, "ndf": 16},  # ...each with a double backward for the penalty
    "lsgan": {"ngf": 32, "ndf": 32},
    # 3x3 convs at full resolution, so few filters; the paper's embedding size h = z = 64, and the
    # paper's lr halving (every quarter of the default budget). Without the halving, G drifted
    # onto one or two digits as k_t decayed (2/10 at 8000 steps). Wider is not better here:
    # 64 and 128 filters ended all 1s with every seed (H100, benchmarks/RESULTS.md).
    "began": {"n_filters": 16, "h_dim": 64, "z_dim": 64, "lr_halve_every": 2000},
}

# Relative cost of one step with the widths above (measured on CPU): schedules the jobs.
COST = {"gan": 0.3, "dcgan": 1, "cgan": 1, "infogan": 1.2, "lsgan": 1, "wgan": 2.5, "wgan_gp": 3, "began": 3.5}

TARGETS = {"label_accuracy": 0.95, "infogan_purity": 0.8, "mode_coverage": 1.0}
SHEETS = {"cgan": "classes.png"}  # the class-per-row sheet shows the conditioning; others: samples.png


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--steps", type=int, default=8000, help="generator steps per variant (same for all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--mnist-root", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist")
    p.add_argument("--work", type=Path, default=None, help="folder for data/checkpoints/eval (default: a temp folder)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "quality.json")
    p.add_argument("--sheets", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 1 is fastest on a machine other jobs share")
    p.add_argument("--jobs", type=int, default=2,
                   help="variants trained at once, each in its own process (one per CPU core)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="bf16", choices=["bf16", "off", "auto"], help="train.amp for every variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="train every variant once per seed (one table row each): shows how much a "
                        "result depends on the seed; sample sheets come from the first")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra dotted override for every variant trained, e.g. model.began.gamma=1.0")
    return p.parse_args(argv)


def config_for(variant: str, args: argparse.Namespace, work: Path, runs: Path | None = None):
    """The benchmark's config; data and classifier live in work, checkpoints/metrics/eval in runs."""
    runs = runs or work
    model = [f"model.{variant}.{k}={v}" for k, v in BENCH_MODEL[variant].items()]
    return load_config(None, [
        f"variant={variant}", f"seed={args.seed}",
        "data.source=mnist", f"data.root={args.mnist_root}", f"data.image_size={args.image_size}",
        "data.download=false", f"data.prepared_dir={work / 'data' / 'prepared'}",
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.device={args.device}",
        f"train.threads={args.threads}", f"train.amp={args.amp}", "train.progress=false",
        f"train.log_every={max(1, args.steps // 10)}",
        f"train.checkpoint_every={args.steps}", f"train.out_dir={runs / 'checkpoints'}",
        f"train.metrics_dir={runs / 'metrics'}",
        f"eval.n_samples={args.eval_samples}", f"eval.out_dir={runs / 'eval'}",
        f"eval.classifier_dir={work / 'classifier'}", "tracking.enabled=false", *model,
        *(o for o in args.overrides if not o.startswith("model.") or o.startswith(f"model.{variant}.")),
    ])


def run_variant(variant: str, args: argparse.Namespace, work: Path, runs: Path, sheets: bool = True) -> dict:
    torch.set_num_threads(args.threads)  # also in worker processes
    cfg = config_for(variant, args, work, runs)
    t0, c0 = time.perf_counter(), time.process_time()
    result = stages.train(cfg, track=False)
    t1, c1 = time.perf_counter(), time.process_time()
    metrics = stages.evaluate(cfg, result.checkpoint, track=False)
    t2 = time.perf_counter()
    sheet = runs / "eval" / variant / "sheets" / SHEETS.get(variant, "samples.png")
    if sheets and sheet.exists():
        args.sheets.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sheet, args.sheets / f"{variant}.png")
    last = result.history[-1] if result.history else {}
    return {"variant": variant, "seed": args.seed, "steps": result.steps, "train_s": round(t1 - t0, 1),
            "train_cpu_s": round(c1 - c0, 1), "eval_s": round(t2 - t1, 1),
            "model": BENCH_MODEL[variant], "final_losses": {k: v for k, v in last.items() if k != "step"},
            "metrics": metrics}


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    """The README's quality table (a seed per row when several seeds ran)."""
    multi_seed = len({r["seed"] for r in rows}) > 1
    lines = ["| variant | fid_classifier | precision | recall | modes covered | label acc. (cgan) "
             "| purity (infogan) | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        m = r["metrics"]
        name = r["variant"] + (f" (seed {r['seed']})" if multi_seed else "")
        lines.append(f"| {name} | {fmt(m.get(m.get('primary_metric', 'fid_classifier')), 1)} | "
                     f"{fmt(m.get('precision_classifier'))} | {fmt(m.get('recall_classifier'))} | "
                     f"{m.get('modes_covered', 0):.0f}/10 | {fmt(m.get('label_accuracy'))} | "
                     f"{fmt(m.get('infogan_purity'))} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def target_misses(rows: list[dict]) -> list[str]:
    misses = []
    for r in rows:
        for key, target in TARGETS.items():
            value = r["metrics"].get(key)
            if value is not None and value < target:
                misses.append(f"{r['variant']} (seed {r['seed']}): {key} = {value:.3f} < {target}")
    return misses


def mnist_missing(args: argparse.Namespace) -> str | None:
    if (args.mnist_root / "MNIST" / "raw").is_dir():
        return None
    return f"MNIST not found under {args.mnist_root}/MNIST/raw; pass --mnist-root"


@contextlib.contextmanager
def prepared_work(args: argparse.Namespace, variant: str, classifier: bool = True) -> Iterator[Path]:
    """Prepare MNIST and fit the evaluation classifier (unless `classifier` is False) once in
    args.work, before parallel runs would each do it; with no --work, in a temporary folder that
    is removed on exit."""
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ganzoo-quality-")))
        cfg = config_for(variant, args, args.work)
        stages.prepare(cfg)
        if classifier:
            stages.fit_classifier(cfg)
        yield args.work


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = args.seeds or [args.seed]
    torch.set_num_threads(args.threads)
    if missing := mnist_missing(args):
        print(missing, file=sys.stderr)
        return 2
    start = time.perf_counter()
    with prepared_work(args, args.variants[0]):
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
    misses = target_misses(rows)
    report = {"dataset": "mnist test split (10,000 images)", "image_size": args.image_size,
              "steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
              "device": args.device, "amp": args.amp, "seeds": seeds, "overrides": args.overrides,
              "eval_samples": args.eval_samples,
              "wall_s": round(wall, 1), "targets": TARGETS, "target_misses": misses, "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(f"\nwall time {wall / 60:.1f} min; JSON: {args.out}; sheets: {args.sheets}/")
    print("targets: all met" if not misses else "targets missed:\n  " + "\n  ".join(misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())

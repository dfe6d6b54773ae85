"""Time to quality: training wall seconds until a variant's samples reach an FID threshold on
MNIST 32x32, for the default settings and faster ones. Throughput alone can mislead (bigger
batches or lower precision may need more steps); this is the number a user waits for.

Every `--eval-every` steps the run pauses, draws `--eval-samples` samples (fixed seed) and
computes FID against as many real images in the feature space of the evaluation classifier
(`fid_classifier`, the evaluation's primary metric; the classifier is trained once on the data
and cached). Evaluation time is excluded from the clock: the reported seconds are training
only, taken when the loop has just synchronised with the device. The run stops at the first
evaluation at or below `--threshold`, or at `--max-steps` (reported as not reached).

    nice -n 10 .venv/bin/python -m benchmarks.time_to_quality --variants dcgan --options default
    .venv/bin/python -m benchmarks.time_to_quality --device cuda --variants dcgan,wgan_gp,lsgan \\
        --options default,amp+cl+graphs --eval-every 200 --max-steps 20000

Uses the shared MNIST test split (../shared/datasets/mnist, 10k digits). Writes
benchmarks/out/time_to_quality.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.config import Config, load_config
from ganzoo.errors import ConfigError
from ganzoo.evaluation.features import build_features
from ganzoo.evaluation.metrics import extract, fid
from ganzoo.sampling import generate
from ganzoo.training.hooks import Hooks
from ganzoo.training.loop import train_loop


class _Reached(Exception):
    pass


class QualityClock(Hooks):
    """Times training between evaluations and evaluates FID at every log step."""

    def __init__(self, extractor, real_feats: torch.Tensor, n: int, seed: int, threshold: float):
        self.extractor, self.real_feats, self.n, self.seed = extractor, real_feats, n, seed
        self.threshold = threshold
        self.trace: list[dict] = []
        self.train_s = 0.0
        self.variant = None
        self.resumed_at = time.perf_counter()

    def on_start(self, cfg, variant, start_step):
        self.variant = variant
        self.resumed_at = time.perf_counter()

    def on_log(self, step, losses, images_per_s):
        self.train_s += time.perf_counter() - self.resumed_at  # the loop has just synchronised
        fake = generate(self.variant, self.n, seed=self.seed)
        self.variant.train()  # generate() left the nets in eval mode
        fake_feats, _ = extract(self.extractor, fake)
        value = fid(self.real_feats, fake_feats)
        self.trace.append({"step": step, "train_s": round(self.train_s, 2), "fid_classifier": value})
        print(f"  step {step:6d}  {self.train_s:8.1f} s  fid_classifier {value:8.3f}", flush=True)
        if value <= self.threshold:
            raise _Reached
        self.resumed_at = time.perf_counter()


def run_one(variant: str, options: str, args, prep, extractor, real_feats, workdir: str) -> dict:
    cfg: Config = load_config(None, [
        f"variant={variant}", f"train.steps={args.max_steps}", f"train.log_every={args.eval_every}",
        f"train.batch_size={args.batch_size}", "train.checkpoint_every=100000000", "train.progress=false",
        "tracking.enabled=false", f"train.device={args.device}", f"train.out_dir={workdir}/ck-{variant}-{options}",
        f"train.metrics_dir={workdir}/m", "data.source=mnist", f"data.root={common.SHARED_MNIST}",
        *common.option_overrides(options), *args.set])
    clock = QualityClock(extractor, real_feats, args.eval_samples, args.seed, args.threshold)
    print(f"{variant} [{options}]", flush=True)
    reached = False
    try:
        train_loop(cfg, prep, hooks=[clock])
    except _Reached:
        reached = True
    except ConfigError as err:
        return {"variant": variant, "options": options, "status": f"n/a: {err}"}
    last = clock.trace[-1] if clock.trace else {}
    return {"variant": variant, "options": options, "status": "ok", "reached": reached,
            "seconds": last.get("train_s"), "steps": last.get("step"), "fid_classifier": last.get("fid_classifier"),
            "images_seen": (last.get("step") or 0) * args.batch_size, "trace": clock.trace}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="dcgan", help="comma-separated image-synthesis variants")
    ap.add_argument("--options", default="default", help="comma-separated option sets (see throughput.py)")
    ap.add_argument("--threshold", type=float, default=100.0, help="fid_classifier to reach (lower is better)")
    ap.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    ap.add_argument("--eval-samples", type=int, default=1000, help="generated (and real) images per evaluation")
    ap.add_argument("--max-steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=1234, help="sampling seed of the evaluations")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    ap.add_argument("--classifier-dir", default=str(common.OUT / "classifier"),
                    help="cache of the evaluation classifier (trained once per dataset)")
    ap.add_argument("--out", default=str(common.OUT / "time_to_quality.json"))
    args = ap.parse_args()
    if missing := common.mnist_missing(common.SHARED_MNIST):
        raise SystemExit(f"{missing}; time to quality is measured on MNIST")
    device = common.resolve_device(args.device)
    args.device = str(device)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ganzoo-ttq-") as workdir:
        base = load_config(None, ["data.source=mnist", f"data.root={common.SHARED_MNIST}", "data.download=false",
                                  f"data.prepared_dir={workdir}/prepared",
                                  f"eval.classifier_dir={args.classifier_dir}"])
        prep = stages.prepare(base)
        extractor, _, info = build_features("classifier", prep, base.eval, device)
        real = prep.tensors["x"][torch.randperm(prep.tensors["x"].shape[0],
                                                generator=torch.Generator().manual_seed(args.seed))[:args.eval_samples]]
        real_feats, _ = extract(extractor, real)
        print(f"classifier accuracy {info.get('classifier_accuracy', float('nan')):.4f}; threshold "
              f"fid_classifier <= {args.threshold}")
        for v in args.variants.split(","):
            for o in args.options.split(","):
                rows.append(run_one(v, o, args, prep, extractor, real_feats, workdir))

    print("\n| variant | options | reached | train s | steps | fid_classifier |\n|---|---|---|---:|---:|---:|")
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['variant']} | {r['options']} | {r['status']} |  |  |  |")
            continue
        print(f"| {r['variant']} | {r['options']} | {'yes' if r['reached'] else 'no'} | {r['seconds']} | "
              f"{r['steps']} | {r['fid_classifier']:.3f} |")
    common.write_json(args.out, {"machine": common.machine(device), "threshold": args.threshold,
                                 "eval_samples": args.eval_samples, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

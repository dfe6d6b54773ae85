"""Digit coverage along one training run, for the mode-collapse studies in the README (BEGAN).

Trains one variant exactly as the quality benchmark does (same data, widths, budget, overrides)
and every --every steps classifies 1000 samples with the evaluation classifier, printing the
class histogram, the digits that get >= 2% of the samples (the evaluation's threshold) and the
logged losses (k_t and M for BEGAN). A final coverage alone hides whether a generator never
spread out, spread out and then collapsed, or cycled between digits. Results:
benchmarks/RESULTS.md, "BEGAN on MNIST".

    .venv/bin/python -m benchmarks.studies.coverage_trajectory began --seed 1 --set model.began.gamma=1.0
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.evaluation.classifier import get_classifier, predict
from ganzoo.evaluation.metrics import class_histogram
from ganzoo.training.hooks import Hooks
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry

N_SAMPLES = 1000
THRESHOLD = 0.02  # the evaluation's modes_covered threshold


class CoverageHook(Hooks):
    """At every checkpoint: the class histogram of N_SAMPLES fixed-seed samples."""

    def __init__(self, classifier, num_classes: int):
        self.classifier, self.num_classes, self.losses = classifier, num_classes, {}

    def on_start(self, cfg, variant, start_step):
        self.variant, self.t0 = variant, time.perf_counter()

    def on_log(self, step, losses, images_per_s):
        self.losses = losses

    def on_checkpoint(self, step, path):
        with self.variant.sampling():
            images = self.variant.sample(N_SAMPLES, generator=torch.Generator().manual_seed(1))
        hist = class_histogram(predict(self.classifier, images.float().clamp(-1, 1)), self.num_classes)
        covered = int((hist / N_SAMPLES >= THRESHOLD).sum())
        losses = " ".join(f"{k} {v:.4f}" for k, v in self.losses.items())
        print(f"step {step:6d}  covered {covered}/{self.num_classes}  hist {hist.int().tolist()}  {losses}"
              f"  ({time.perf_counter() - self.t0:.0f} s)", flush=True)


def main(argv=None) -> int:
    p = common.quality_parser(__doc__.split("\n\n")[0])  # --steps, --seed, --set, --work, ... as in quality.py
    p.add_argument("variant", choices=common.QUALITY_VARIANTS)
    p.add_argument("--every", type=int, default=1000, help="steps between coverage checks")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if missing := common.mnist_missing(args.mnist_root):
        print(f"{missing}; pass --mnist-root", file=sys.stderr)
        return 2
    with common.prepared_work(args, args.variant):
        cfg = common.quality_config(args.variant, args, args.work)
        cfg = registry.resolve(cfg.model_copy(update={"train": cfg.train.model_copy(
            update={"checkpoint_every": args.every, "log_every": args.every})}))
        prep = stages.load_data(cfg)
        classifier, _ = get_classifier(prep, cfg.eval)
        train_loop(cfg, prep, hooks=[CoverageHook(classifier, prep.num_classes)])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image-to-image translation: pix2pix, cyclegan and discogan on their embedded digit tasks.

pix2pix learns digits_paired (outline -> digit); cyclegan and discogan learn digits_unpaired
(digit <-> thick inverted digit, no pairs). Each runs through the pipeline's own stages
(prepare -> train -> evaluate) at 32x32 and is judged on the held-out 20%: L1, PSNR and SSIM
against the true targets (paired), cycle-reconstruction error both ways, FID between translated
and real target images, and class preservation, the share of translations the evaluation
classifier (trained on the target domain's digits and labels) gives the source digit's class
(target >= 0.9 on the unpaired task). Writes benchmarks/out/translation.json and one sheet per
variant to docs/img/<variant>.png, and prints a markdown table.

    nice -n 10 .venv/bin/python -m benchmarks.translation                      # all three, ~20 min on 2 CPU cores
    .venv/bin/python -m benchmarks.translation --variants cyclegan --steps 100  # a quick look

Losses, optimisers, loss weights, pools and schedules are the papers'; only the network widths
(and CycleGAN's residual blocks) are narrowed, and the step counts and batch sizes differ per
variant (BENCH) so the whole run fits a small shared CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.config import Config, load_config

VARIANTS = ["pix2pix", "cyclegan", "discogan"]

BENCH: dict[str, dict] = {
    "pix2pix": {"source": "digits_paired", "steps": 400, "batch_size": 16,
                "model": {"ngf": 32, "ndf": 32}},
    "cyclegan": {"source": "digits_unpaired", "steps": 400, "batch_size": 8,
                 "model": {"ngf": 16, "ndf": 32, "n_blocks": 3}},
    "discogan": {"source": "digits_unpaired", "steps": 400, "batch_size": 32,
                 "model": {"ngf": 32, "ndf": 32}},
}
TARGETS = {"class_preservation": 0.9}  # on the unpaired task (issue 4)
COLUMNS = [("l1", "L1", 3), ("psnr", "PSNR dB", 1), ("ssim", "SSIM", 3), ("cycle_error_a", "cycle A", 3),
           ("cycle_error_b", "cycle B", 3), ("fid_classifier", "FID (classifier)", 2),
           ("class_preservation", "class kept", 3)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--steps", type=int, default=None, help="override every variant's step count")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--work", type=Path, default=None, help="folder for data/checkpoints/eval (default: a temp folder)")
    p.add_argument("--out", type=Path, default=common.OUT / "translation.json")
    p.add_argument("--sheets", type=Path, default=common.REPO / "docs" / "img")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads; 1 is fastest on a shared machine")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def config_for(variant: str, args: argparse.Namespace, work: Path) -> Config:
    bench = BENCH[variant]
    steps = args.steps or bench["steps"]
    model = [f"model.{variant}.{k}={v}" for k, v in bench["model"].items()]
    return load_config(None, [
        f"variant={variant}", f"seed={args.seed}",
        f"data.source={bench['source']}", f"data.image_size={args.image_size}",
        f"data.prepared_dir={work / 'data' / 'prepared'}",
        f"train.steps={steps}", f"train.batch_size={bench['batch_size']}", f"train.device={args.device}",
        f"train.threads={args.threads}", "train.progress=false", f"train.log_every={max(1, steps // 10)}",
        f"train.checkpoint_every={steps}", f"train.out_dir={work / 'checkpoints'}",
        f"train.metrics_dir={work / 'metrics'}", f"eval.out_dir={work / 'eval'}",
        f"eval.classifier_dir={work / 'classifier'}", "tracking.enabled=false", *model,
    ])


def run_variant(variant: str, args: argparse.Namespace, work: Path) -> dict:
    cfg = config_for(variant, args, work)
    stages.prepare(cfg)
    t0 = time.perf_counter()
    result = stages.train(cfg, track=False)
    t1 = time.perf_counter()
    metrics = stages.evaluate(cfg, result.checkpoint, track=False)
    t2 = time.perf_counter()
    common.keep_sheet(work / "eval" / variant / "sheets" / "translations.png", args.sheets, variant)
    last = result.history[-1] if result.history else {}
    return {"variant": variant, "source": cfg.data.source, "steps": result.steps,
            "batch_size": cfg.train.batch_size, "train_s": round(t1 - t0, 1), "eval_s": round(t2 - t1, 1),
            "model": BENCH[variant]["model"], "final_losses": {k: v for k, v in last.items() if k != "step"},
            "metrics": metrics}


def table(rows: list[dict]) -> str:
    lines = ["| variant | data | " + " | ".join(title for _, title, _ in COLUMNS) + " | train s |",
             "| --- | --- |" + " ---: |" * (len(COLUMNS) + 1)]
    for r in rows:
        m = r["metrics"]
        cells = " | ".join(common.fmt(m.get(key), digits) for key, _, digits in COLUMNS)
        lines.append(f"| {r['variant']} | {r['source']} | {cells} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = []
    with common.work_folder(args, "ganzoo-translation-"):
        for variant in args.variants:
            rows.append(run_variant(variant, args, args.work))
            r = rows[-1]
            print(f"[translation] {variant}: {r['train_s']:.0f}s train, {r['eval_s']:.0f}s eval, "
                  + ", ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items() if isinstance(v, float)), flush=True)
    wall = time.perf_counter() - start
    # the targets are for the unpaired task only
    misses = common.target_misses(((r["variant"], r["metrics"]) for r in rows if r["source"] == "digits_unpaired"),
                                  TARGETS)
    common.report(args, {"image_size": args.image_size, "threads": args.threads, "device": args.device,
                         "seed": args.seed, "wall_s": round(wall, 1), "targets": TARGETS, "target_misses": misses,
                         "variants": rows}, table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

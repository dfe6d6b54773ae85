"""The training monitor on real runs: the quality benchmark's settings (MNIST 32x32), plain BEGAN
(whose objective collapses on MNIST) next to DCGAN, with the monitor on. Writes, per variant,
the in-loop history (`<variant>_history.csv`: losses and probe metrics by step) and the evolution
of the fixed probe (`<variant>_evolution.png`: the first 8 probe samples at every evaluation, one
row per evaluation), plus a plot of coverage and probe FID (`monitor_curves.png`) for the README.

    .venv/bin/python -m benchmarks.studies.monitor_showcase --device cuda --out OUT [--steps 8000]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.data.images import save_grid
from ganzoo.evaluation.monitor import build_monitor
from ganzoo.training.hooks import Hooks
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry

PROBE_ROW = 8  # probe samples per evaluation in the evolution strip


class Collect(Hooks):
    def __init__(self):
        self.rows: list[torch.Tensor] = []
        self.alarms: list[tuple[int, str]] = []

    def on_eval(self, health):
        sheet = torch.from_numpy(np.ascontiguousarray(health.sheet))  # HWC grid of 8 x 8 samples
        cell = (sheet.shape[0] - 2) // 8  # make_grid's 2-pixel gutters: cells of size + 2
        first_row = sheet[2:cell, 2:2 + PROBE_ROW * cell]
        self.rows.append(torch.stack([first_row[:, i * cell:i * cell + cell - 2] for i in range(PROBE_ROW)]))

    def on_alarm(self, step, alarm):
        self.alarms.append((step, alarm))


def run(variant: str, args, work: Path, out: Path) -> dict:
    cfg = common.quality_config(variant, args, work, work / variant)
    cfg = registry.resolve(cfg.model_copy(update={"monitor": cfg.monitor.model_copy(
        update={"eval_every": args.eval_every, "n_probe": args.probe})}))
    prep = stages.load_data(cfg)
    monitor, what = build_monitor(cfg, prep, common.resolve_device(args.device))
    print(f"{variant}: {what}", flush=True)
    hooks = Collect()
    result = train_loop(cfg, prep, hooks=[hooks], monitor=monitor)
    evals = [row for row in result.history if "probe_coverage" in row]
    with (out / f"{variant}_history.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in evals for k in r)))
        w.writeheader()
        w.writerows(evals)
    strip = torch.cat(hooks.rows).permute(0, 3, 1, 2)  # (evaluations x 8, C, H, W) uint8
    save_grid(strip, out / f"{variant}_evolution.png", nrow=PROBE_ROW)
    return {"evaluations": evals, "alarms": hooks.alarms, "best_step": result.best_step}


def plot(results: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for variant, r in results.items():
        steps = [e["step"] for e in r["evaluations"]]
        ax1.plot(steps, [e["probe_coverage"] for e in r["evaluations"]], label=variant)
        ax2.plot(steps, [e["probe_fid_classifier"] for e in r["evaluations"]], label=variant)
        for step, _ in r["alarms"]:
            ax1.axvline(step, color="red", linestyle=":", linewidth=1)
    ax1.set(xlabel="step", ylabel="classes covered (probe)", ylim=(0, 1.05), title="coverage (red: alarm)")
    ax2.set(xlabel="step", ylabel="FID, classifier space (probe)", yscale="log", title="probe FID")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(out / "monitor_curves.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = common.quality_parser(__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["began", "dcgan"])
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--probe", type=int, default=500)
    p.add_argument("--out", type=Path, default=common.OUT / "monitor_showcase")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with common.prepared_work(args, args.variants[0]) as work:
        for variant in args.variants:
            results[variant] = run(variant, args, work, args.out)
    plot(results, args.out)
    (args.out / "monitor_showcase.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    for variant, r in results.items():
        last = r["evaluations"][-1]
        print(f"{variant}: final coverage {last['probe_coverage']:.2f}, probe FID {last['probe_fid_classifier']:.1f}, "
              f"best at step {r['best_step']}, alarms {r['alarms']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

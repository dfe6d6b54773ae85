"""What the training health monitor costs: the default run (params.yaml: DCGAN on the embedded
digits) trained with `monitor.eval_every=0` and at the default interval, same steps, same device;
reports wall time, the monitor's share and the time of one evaluation (from the on/off
difference, and timed alone on the trained checkpoint: the robust figure on a busy machine).

    .venv/bin/python -m benchmarks.monitor_cost [--steps 1200] [--device cpu|cuda] [--threads 2]

Each configuration runs in the same process after one untimed warm-up, alternating off/on
`--repeats` times; the median is reported. Writes benchmarks/out/monitor_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.config import load_config
from ganzoo.evaluation.monitor import build_monitor
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry


def timed_run(overrides: list[str], work: Path, device: torch.device) -> tuple[float, int]:
    cfg = registry.resolve(load_config(common.REPO / "params.yaml", overrides))
    prep = stages.load_data(cfg)
    monitor, _ = build_monitor(cfg, prep, device)
    t0 = time.perf_counter()
    result = train_loop(cfg, prep, monitor=monitor)
    if device.type == "cuda":
        torch.cuda.synchronize()
    evals = sum("probe_coverage" in row for row in result.history)
    return time.perf_counter() - t0, evals


def time_one_check(overrides: list[str], device: torch.device, repeats: int = 5) -> float:
    """Median time of one evaluation on a trained checkpoint, alone: robust to a busy machine where
    the on/off difference of two whole runs is not."""
    from ganzoo.training.checkpoint import load_variant

    cfg = registry.resolve(load_config(common.REPO / "params.yaml", overrides))
    prep = stages.load_data(cfg)
    monitor, _ = build_monitor(cfg, prep, device)
    assert monitor is not None
    variant = load_variant(Path(cfg.train.out_dir) / cfg.variant / "last.pt", device)[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with variant.sampling():
            monitor.check(variant, 0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (train.threads)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(common.OUT / "monitor_cost.json"))
    args = p.parse_args(argv)
    device = common.resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = [f"train.steps={args.steps}", f"train.device={device.type}", "train.progress=false",
                "tracking.enabled=false", f"data.prepared_dir={work}/prepared", f"eval.classifier_dir={work}/clf",
                f"train.metrics_dir={work}/metrics", *([f"train.threads={args.threads}"] if args.threads else [])]
        cfg = load_config(common.REPO / "params.yaml", base)
        stages.prepare(cfg)
        stages.fit_classifier(cfg)
        default_every = cfg.monitor.eval_every
        times: dict[str, list[float]] = {"off": [], "on": []}
        evals = 0
        for i in range(args.repeats + 1):  # the first pair warms caches and is not counted
            for mode, extra in (("off", ["monitor.eval_every=0"]), ("on", [])):
                wall, n = timed_run([*base, *extra, f"train.out_dir={work}/ck-{mode}-{i}"], work, device)
                if i:
                    times[mode].append(wall)
                    evals = max(evals, n)
        check_s = time_one_check([*base, f"train.out_dir={work}/ck-on-1"], device)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    result = {"steps": args.steps, "eval_every": default_every, "evaluations": evals, "wall_off_s": off,
              "wall_on_s": on, "monitor_share": (on - off) / on, "per_evaluation_s": (on - off) / max(evals, 1),
              "check_s": check_s, "share_from_check": evals * check_s / off,
              "runs": times, "machine": common.machine(device)}
    print(f"{device.type}: {args.steps} steps, {evals} evaluations every {default_every} steps: "
          f"off {off:.2f} s, on {on:.2f} s -> monitor {100 * result['monitor_share']:.1f}% of the run "
          f"({result['per_evaluation_s']:.3f} s per evaluation); one evaluation timed alone: {check_s:.3f} s "
          f"-> {100 * result['share_from_check']:.1f}% of the monitor-off run")
    common.write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

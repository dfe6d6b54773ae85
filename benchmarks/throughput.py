"""Training throughput of ganzoo's loop: images/s and peak memory per variant, batch size and
speed option, on CPU and CUDA. Prints a markdown table and writes JSON.

Every row runs the real `train_loop` (on-device batches, the variant's own train_step, on-device
loss sums) for `--warmup` + `--steps` steps. The loop reads its losses once per window of
`--warmup` steps (its only host sync); the first window (compilation, CUDA graph capture, cuDNN
autotuning, allocator warm-up) is discarded and images/s is taken over the later windows.
"images" are real training images consumed: batch_size x batches_per_step (n_critic for the
WGANs, as the public scripts count them) per step.

Options (`--options`, comma-separated; each one is `plain`, `default` or flags joined by `+`):
  plain    fp32, NCHW, eager                 default  the train.* defaults (auto: bf16 + channels_last on CUDA)
  amp      bf16 autocast                      cl       channels_last
  compile  torch.compile of every network     graphs   the whole step captured as one CUDA graph

    .venv/bin/python -m benchmarks.throughput                                  # CPU or CUDA defaults
    .venv/bin/python -m benchmarks.throughput --device cuda --variants dcgan --batch-sizes 64,1024 \\
        --options plain,amp+cl,amp+cl+graphs,amp+cl+compile+graphs
    .venv/bin/python -m benchmarks.throughput --compare-dataloader             # issue 8's CPU comparison

Peak memory: CUDA rows report torch's peak allocated bytes; CPU rows report the process's peak
resident set (VmHWM, reset before each row), which includes the Python/torch runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks import common
from ganzoo import stages
from ganzoo.config import Config, load_config
from ganzoo.data.prepared import Prepared
from ganzoo.errors import ConfigError
from ganzoo.training.hooks import Hooks
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry

# --widths narrow: network widths that keep a CPU table to minutes (the paper widths of began or
# cyclegan take seconds per step on 2 cores). Hyper-parameters other than widths stay the paper's.
NARROW = {"gan": {"hidden": 128}, "dcgan": {"ngf": 32, "ndf": 32}, "cgan": {"ngf": 32, "ndf": 32},
          "infogan": {"ngf": 32, "ndf": 32}, "wgan": {"ngf": 16, "ndf": 16}, "wgan_gp": {"ngf": 16, "ndf": 16},
          "lsgan": {"ngf": 32, "ndf": 32}, "began": {"n_filters": 16, "h_dim": 32, "z_dim": 32},
          "pix2pix": {"ngf": 16, "ndf": 16}, "cyclegan": {"ngf": 16, "ndf": 16, "n_blocks": 3},
          "discogan": {"ngf": 16, "ndf": 16}}


# --------------------------------------------------------------------------- data

def synthetic(kind: str, n: int, size: int, channels: int = 1, seed: int = 0) -> Prepared:
    """Random uint8 images in the prepared format: speed does not depend on image content."""
    g = torch.Generator().manual_seed(seed)

    def imgs() -> torch.Tensor:
        return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)

    manifest = {"source": "synthetic", "classes": [str(i) for i in range(10)], "content_hash": f"syn{seed}"}
    if kind == "images":
        return Prepared("images", {"x": imgs(), "y": torch.arange(n) % 10}, manifest)
    return Prepared(kind, {"a": imgs(), "b": imgs()}, manifest)


def mnist_or_synthetic(size: int, workdir: str) -> Prepared:
    """The shared MNIST test split (10k digits) when present, else 10k random images."""
    if common.mnist_missing(common.SHARED_MNIST) is None:
        cfg = load_config(None, ["data.source=mnist", f"data.root={common.SHARED_MNIST}", "data.download=false",
                                 f"data.image_size={size}", f"data.prepared_dir={workdir}/prepared"])
        return stages.prepare(cfg)
    return synthetic("images", 10_000, size)


# --------------------------------------------------------------------------- memory

def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
        except OSError:
            pass


def peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- one measurement

class _Windows(Hooks):
    def __init__(self):
        self.ips: list[float] = []
        self.images_per_step = 0

    def on_start(self, cfg, variant, start_step):
        self.images_per_step = cfg.train.batch_size * variant.batches_per_step

    def on_log(self, step, losses, images_per_s):
        self.ips.append(images_per_s)


def measure(cfg: Config, prep: Prepared, device: torch.device) -> dict:
    """Run train_loop with cfg (log_every = the window) and return the timed windows' numbers."""
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()  # compiled graphs of earlier rows must not count against recompile limits
    rec = _Windows()
    reset_peak(device)
    try:
        train_loop(cfg, prep, hooks=[rec])
    except ConfigError as err:
        return {"status": f"n/a: {err}"}
    except torch.cuda.OutOfMemoryError:
        return {"status": "out of memory"}
    timed = rec.ips[1:]
    ips = len(timed) / sum(1 / x for x in timed)  # equal-length windows: total images / total time
    return {"status": "ok", "images_per_s": ips, "ms_per_step": 1000 * rec.images_per_step / ips,
            "peak_mib": peak_mib(device), "images_per_step": rec.images_per_step}


def row_config(variant: str, batch: int, options: str, args, workdir: str) -> Config:
    window = args.warmup
    steps = window * (1 + max(1, math.ceil(args.steps / window)))
    return load_config(None, [f"variant={variant}", f"train.batch_size={batch}", f"train.steps={steps}",
                              f"train.log_every={window}", "train.checkpoint_every=1000000",
                              "train.progress=false", "tracking.enabled=false", f"train.device={args.device}",
                              f"train.out_dir={workdir}/ck", f"train.metrics_dir={workdir}/m",
                              *([f"train.threads={args.threads}"] if args.threads else []),
                              *common.option_overrides(options),
                              *(f"model.{variant}.{k}={v}" for k, v in widths(variant, args.widths).items()),
                              *args.set])


def widths(variant: str, which: str) -> dict:
    return NARROW.get(variant, {}) if which == "narrow" else {}


def data_for(variant: str, datasets: dict, size: int) -> Prepared:
    kind = registry.get_variant(variant).data_kind
    kind = "images" if kind == "labelled" else kind
    if kind not in datasets:
        datasets[kind] = synthetic(kind, 2_000, size)
    return datasets[kind]


# --------------------------------------------------------------------------- DataLoader comparison

def compare_dataloader(args, workdir: str) -> dict:
    """`ganzoo train` with params.yaml defaults vs the same nets in a public-script DataLoader
    loop (common.run_dataloader_loop), alternated `--repeats` times (the median is reported: the
    machine may be shared)."""
    window = 50  # params.yaml's train.log_every: the ganzoo run is exactly the default run
    steps = window * (1 + max(1, math.ceil(args.dl_steps / window)))
    extra = [f"train.device={args.device}", *([f"train.threads={args.threads}"] if args.threads else []), *args.set]
    cfg = common.default_run_config(steps, workdir, extra)
    prep = stages.prepare(cfg)
    device = torch.device(args.device)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(measure(cfg, prep, device)["images_per_s"])
        baseline = common.run_dataloader_loop(cfg, prep, window, steps - window, str(device), window)
        theirs.append(baseline["images_per_s"])
    a, b = statistics.median(ours), statistics.median(theirs)
    data = registry.resolve(cfg).data  # data.source=auto -> the variant's embedded dataset
    return {"setup": f"params.yaml defaults: {cfg.variant} on {data.source} {data.image_size}px, "
                     f"batch {cfg.train.batch_size}, model {cfg.model.get(cfg.variant, {})}, overrides {extra}",
            "ganzoo_images_per_s": a, "dataloader_images_per_s": b, "ratio": a / b,
            "ganzoo_runs": ours, "dataloader_runs": theirs, "timed_steps": steps - window}


# --------------------------------------------------------------------------- report

def table(rows: list[dict]) -> str:
    out = ["| variant | batch | options | images/s | ms/step | peak MiB | status |",
           "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        head = f"| {r['variant']} | {r['batch_size']} | {r['options']} |"
        if r["status"] != "ok":
            out.append(f"{head}  |  |  | {r['status']} |")
            continue
        mem = f"{r['peak_mib']:,.0f}" if r.get("peak_mib") is not None else ""
        out.append(f"{head} {r['images_per_s']:,.0f} | {r['ms_per_step']:.1f} | {mem} | ok |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--variants", default="synthesis",
                    help="comma-separated names, 'synthesis' (every image-synthesis variant) or 'all' (+ translation)")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated (default: 64 on CPU, 64,1024 on CUDA)")
    ap.add_argument("--options", default=None,
                    help="comma-separated option sets (default: plain,cl on CPU; plain,amp+cl,amp+cl+graphs on CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps, rounded up to whole windows "
                                                            "(default: 20 on CPU, 200 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="steps per window; the first window is not timed "
                                                             "(default: 10 on CPU, 50 on CUDA)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--widths", choices=["paper", "narrow"], default=None,
                    help="network widths: each variant's paper defaults, or the narrow NARROW table "
                         "(default: narrow on CPU, paper on CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (train.threads)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every row, e.g. --set model.dcgan.ngf=32")
    ap.add_argument("--compare-dataloader", action="store_true",
                    help="only the issue's CPU comparison: default `ganzoo train` vs a public-script DataLoader loop")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of the DataLoader comparison")
    ap.add_argument("--dl-steps", type=int, default=100, help="timed steps of each DataLoader-comparison run")
    ap.add_argument("--out", default=str(common.OUT / "throughput.json"))
    args = ap.parse_args()

    device = common.resolve_device(args.device)
    args.device = str(device)
    cuda = device.type == "cuda"
    args.steps = args.steps or (200 if cuda else 20)
    args.warmup = args.warmup or (50 if cuda else 10)
    args.widths = args.widths or ("paper" if cuda else "narrow")
    result = {"machine": {**common.machine(device), "threads": args.threads or torch.get_num_threads()}, "rows": []}

    with tempfile.TemporaryDirectory(prefix="ganzoo-bench-") as workdir:
        if args.compare_dataloader:
            cmp = compare_dataloader(args, workdir)
            result["dataloader_comparison"] = cmp
            print(f"{cmp['setup']}\n| loop | images/s (median of {args.repeats}) |\n|---|---:|\n"
                  f"| ganzoo train (on-device batches) | {cmp['ganzoo_images_per_s']:,.0f} |\n"
                  f"| DataLoader + .item() per step | {cmp['dataloader_images_per_s']:,.0f} |\n"
                  f"ratio: {cmp['ratio']:.2f}x (target >= 1.5x)")
        else:
            names = registry.names()
            synthesis = [n for n in names if registry.get_variant(n).data_kind in ("images", "labelled")]
            variants = {"synthesis": synthesis, "all": names}.get(args.variants, args.variants.split(","))
            batches = [int(b) for b in (args.batch_sizes or ("64,1024" if cuda else "64")).split(",")]
            options = (args.options or ("plain,amp+cl,amp+cl+graphs" if cuda else "plain,cl")).split(",")
            for o in options:
                common.option_overrides(o)  # reject typos before anything runs
            datasets = {"images": mnist_or_synthetic(args.image_size, workdir)}
            for v in variants:
                for b in batches:
                    for o in options:
                        r = measure(row_config(v, b, o, args, workdir), data_for(v, datasets, args.image_size), device)
                        row = {"variant": v, "batch_size": b, "options": o, "device": str(device),
                               "model": widths(v, args.widths), **r}
                        result["rows"].append(row)
                        print(table([row]).splitlines()[-1], flush=True)
            print("\n" + table(result["rows"]))
    result["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    key = "dataloader_comparison" if args.compare_dataloader else device.type
    existing[key] = result  # CPU, CUDA and the comparison live side by side in one file
    common.write_json(out, existing)
    print(f"\nwrote {out} [{key}]")


if __name__ == "__main__":
    main()

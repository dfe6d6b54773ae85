"""pix2pix and CycleGAN training speed at the papers' size: images/s and peak memory at batch 1
and at the largest batch that fits, eager fp32 (what the public reference implementation runs)
vs ganzoo's defaults. Writes `translation_speed.json` into `--out` and prints a markdown table.

    .venv/bin/python -m benchmarks.translation_speed --out benchmarks/out            # CUDA: 256 px, paper widths
    .venv/bin/python -m benchmarks.translation_speed --device cpu --out benchmarks/out  # CPU: 64 px, narrow nets

Rows (same nets, same data, same jitter; only the execution differs):
- `eager_fp32`: fp32 (PyTorch's default TF32 convolutions on CUDA, as the reference gets),
  NCHW, eager, `torch.optim.Adam` with its default implementation (what
  junyanz/pytorch-CycleGAN-and-pix2pix builds). Batches still come from ganzoo's on-device
  sampler, which the reference does not have (its DataLoader decodes and jitters JPEGs on the
  CPU): the baseline is faster than the reference, so the ratio understates ganzoo's lead.
- `ganzoo`: the train.* defaults on that device: bf16 autocast, channels_last and fused Adam on
  CUDA, plus the whole step as one CUDA graph where the variant allows it (both: CycleGAN's
  learning-rate schedule and image pools run on the device since issue 19; the eager_fp32 row's
  reference Adam keeps the float LambdaLR schedule, as the reference code). On the CPU: fp32,
  channels_last, foreach Adam.

Every row runs the variant's own `train_step` on the papers' jittered batches (load at 286,
crop 256, flip) from 64 random images per domain, after warm-up steps (cuDNN autotuning, graph
capture); timed windows end with one host sync. "Largest batch": from the memory one batch of 8
takes, the largest power of two expected to fit in 92% of the GPU, halved until an eager step
fits (the next power of two up was not tried: it would need over 92%). Peak memory is
torch's peak allocated bytes on CUDA and the process's peak RSS (VmHWM, reset per row) on the
CPU. cuDNN autotuning is on in both modes (ganzoo's loop turns it on). On CUDA the script also runs
CycleGAN's step under `torch.cuda.set_sync_debug_mode("error")`: the image pool must not make
the host wait for the GPU. `--budget-s` bounds the whole run (rows past it are skipped, and the
JSON is rewritten after every row, so a cut-off run keeps what it measured). `--alternate N`
times the two modes of a row in N alternating windows each (both built side by side; the median
window counts), for a shared machine whose load drifts more between rows than the modes differ.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import re
import time
from pathlib import Path

import torch

from benchmarks import common
from ganzoo.config import load_config
from ganzoo.data.prepared import Prepared
from ganzoo.data.sampler import DeviceBatches
from ganzoo.training.device import cuda_graph_blocker, make_train_step, seed_everything, use_channels_last
from ganzoo.training.loop import data_spec
from ganzoo.variants import base, registry

VARIANTS = {"pix2pix": "paired", "cyclegan": "unpaired"}
NARROW = {"pix2pix": {"ngf": 16, "ndf": 16}, "cyclegan": {"ngf": 16, "ndf": 16}}  # CPU widths; blocks as the paper
MODES = ("eager_fp32", "ganzoo")


def synthetic(kind: str, size: int, n: int = 64) -> Prepared:
    g = torch.Generator().manual_seed(0)

    def imgs() -> torch.Tensor:
        return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)

    return Prepared(kind, {"a": imgs(), "b": imgs()}, {"source": "synthetic", "classes": None})


@contextlib.contextmanager
def reference_adam(on: bool):
    """Variants build torch.optim.Adam with its default implementation, as the reference code does."""
    original = base.Variant.adam
    if on:
        def adam(self, params, net, betas=None):
            return torch.optim.Adam(params, lr=self.lr(net), betas=tuple(betas or self.hp.betas))
        base.Variant.adam = adam  # type: ignore[method-assign]
    try:
        yield
    finally:
        base.Variant.adam = original  # type: ignore[method-assign]


class Setup:
    """One variant x mode x batch, built as `train_loop` builds it (without checkpoints)."""

    def __init__(self, variant: str, mode: str, batch: int, args, graphs: bool = True):
        device = torch.device(args.device)
        cuda = device.type == "cuda"
        plain = mode == "eager_fp32"
        options = ['train.amp="off"', 'train.channels_last="off"'] if plain else []
        widths = NARROW[variant] if args.widths == "narrow" else {}
        cfg = registry.resolve(load_config(None, [
            f"variant={variant}", "data.jitter=true", f"train.batch_size={batch}", f"train.device={device}",
            "train.steps=100000", *options, *(f"model.{variant}.{k}={v}" for k, v in widths.items())]))
        seed_everything(0)
        prep = synthetic(VARIANTS[variant], args.size)
        with reference_adam(plain):
            self.variant = registry.build(cfg, data_spec(prep), device)
        self.graph_blocker = cuda_graph_blocker(self.variant) if cuda else "CPU"
        if cuda and not plain and graphs and self.graph_blocker is None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cuda_graphs": True})})
        self.graphs = bool(cfg.train.cuda_graphs)
        cl = use_channels_last(device, cfg.train.channels_last, self.variant.nets)
        self.batches = DeviceBatches(prep, batch, device, 0, channels_last=cl, jitter=True)
        if cl:
            for net in self.variant.nets.values():
                net.to(memory_format=torch.channels_last)
        self.variant.train()
        self.step = make_train_step(self.variant, device, cfg.train)
        self.device, self.batch = device, batch

    def run(self, n: int) -> float:
        """Seconds for n steps, ended by one host sync (the losses are summed on the device)."""
        total = None
        start = time.perf_counter()
        for _ in range(n):
            losses = self.step(self.batches.next())
            s = sum(v.float() for v in losses.values())
            total = s if total is None else total + s
        float(total)  # the one host sync
        return time.perf_counter() - start


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM


def peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    m = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) / 1024 if m else None


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def measure(variant: str, mode: str, batch: int, args, warmup: int) -> dict:
    device = torch.device(args.device)
    reset_peak(device)
    try:
        s = Setup(variant, mode, batch, args)
        s.run(3)  # eager warm-up (a CUDA graph step captures on its 4th call)...
        _free(device)  # ...whose cached blocks are released, so the capture has the room eager had
        s.run(max(1, warmup - 3))
        probe = s.run(3) / 3
        n = max(3, min(2000, math.ceil(args.window_s / max(probe, 1e-6))))
        seconds = [s.run(n) for _ in range(2)]
    except torch.cuda.OutOfMemoryError:
        return {"status": "out of memory"}
    except RuntimeError as err:  # e.g. a failed graph capture: recorded, the other rows still run
        return {"status": f"error: {str(err).splitlines()[0][:120]}"}
    t = min(seconds) / n  # the quieter of two windows (shared machines)
    row = {"status": "ok", "images_per_s": batch / t, "ms_per_step": 1000 * t, "steps_timed": 2 * n,
           "peak_mib": peak_mib(device), "cuda_graphs": s.graphs,
           "graphs_blocked_by": None if s.graphs else s.graph_blocker}
    del s
    reset_peak(device)
    return row


def measure_alternating(variant: str, batch: int, args, warmup: int) -> dict[str, dict]:
    """Both modes built side by side and timed in alternating windows (A B, then B A, ...), so
    load that drifts during the run (a shared machine) hits both alike. Per mode: the median
    window and every window's images/s; no per-mode peak memory (both live in one process)."""
    setups = {mode: Setup(variant, mode, batch, args) for mode in MODES}
    steps = {}
    for mode, s in setups.items():
        s.run(max(1, warmup))
        steps[mode] = max(3, min(2000, math.ceil(args.window_s / max(s.run(3) / 3, 1e-6))))
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.alternate):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            seconds[mode].append(setups[mode].run(steps[mode]) / steps[mode])
    rows = {}
    for mode, ts in seconds.items():
        t = sorted(ts)[len(ts) // 2]  # the median window
        rows[mode] = {"status": "ok", "images_per_s": batch / t, "ms_per_step": 1000 * t,
                      "steps_timed": len(ts) * steps[mode], "peak_mib": None, "cuda_graphs": setups[mode].graphs,
                      "graphs_blocked_by": None if setups[mode].graphs else setups[mode].graph_blocker,
                      "images_per_s_windows": [round(batch / x, 3) for x in ts]}
    return rows


def fits(variant: str, mode: str, batch: int, args) -> tuple[bool, float, float]:
    """(whether `batch` trains an eager step without running out of memory, peak MiB, MiB
    allocated before the step: nets, optimizer and data)."""
    device = torch.device(args.device)
    reset_peak(device)
    ok, peak, static = False, 0.0, 0.0
    try:
        s = Setup(variant, mode, batch, args, graphs=False)
        static = torch.cuda.memory_allocated(device) / 2 ** 20
        s.run(1)  # the first step allocates the optimizer state too: the peak of any step
        ok, peak = True, peak_mib(device) or 0.0
        del s
    except torch.cuda.OutOfMemoryError:
        pass
    reset_peak(device)
    return ok, peak, static


def largest_batch(variant: str, mode: str, args, log: list) -> int:
    """The largest power of two expected to fit in 92% of the GPU (from batch 8's peak),
    halved until one eager step fits."""
    device = torch.device(args.device)
    if device.type != "cuda":
        return args.cpu_batch
    total = torch.cuda.get_device_properties(device).total_memory / 2 ** 20
    ok, peak8, static = fits(variant, mode, 8, args)
    if not ok:
        return 1
    per_image = max(1e-3, (peak8 - static) / 8)
    batch = 2 ** int(math.log2(max(8, (0.92 * total - static) / per_image)))
    while batch > 8:
        ok = fits(variant, mode, batch, args)[0]
        log.append({"variant": variant, "mode": mode, "batch": batch, "fits": ok,
                    "estimate_mib_per_image": per_image, "static_mib": static})
        if ok:
            break
        batch //= 2
    return batch


def sync_free_cyclegan(args) -> str:
    """'yes' when 3 CycleGAN steps (ganzoo defaults) run under sync debug mode 'error' (graphed:
    3 replays, after the eager warm-up and the capture, which synchronises by design)."""
    s = Setup("cyclegan", "ganzoo", 1, args)
    s.run(5)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            s.step(s.batches.next())
        verdict = "yes"
    except RuntimeError as err:
        verdict = f"no: {str(err).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return verdict


def table(rows: list[dict]) -> str:
    out = ["| variant | size | batch | mode | images/s | ms/step | peak MiB | CUDA graphs | x eager fp32 |",
           "|---|---:|---:|---|---:|---:|---:|---|---:|"]
    base_ips = {(r["variant"], r["batch_label"]): r["images_per_s"] for r in rows
                if r["mode"] == "eager_fp32" and r["status"] == "ok"}
    for r in rows:
        head = f"| {r['variant']} | {r['size']} | {r['batch_size']} | {r['mode']} |"
        if r["status"] != "ok":
            out.append(f"{head} | | | | {r['status']} |")
            continue
        ref = base_ips.get((r["variant"], r["batch_label"]))
        ratio = f"{r['images_per_s'] / ref:.2f}" if ref else ""
        graphs = "yes" if r["cuda_graphs"] else f"no ({r['graphs_blocked_by']})"
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        out.append(f"{head} {r['images_per_s']:,.1f} | {r['ms_per_step']:.1f} | {peak} | "
                   f"{graphs} | {ratio} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--variants", default="pix2pix,cyclegan")
    ap.add_argument("--size", type=int, default=None, help="image size (default: 256 on CUDA, 64 on CPU)")
    ap.add_argument("--widths", choices=["paper", "narrow"], default=None,
                    help="paper (ngf/ndf 64; the CUDA default) or narrow (16; the CPU default)")
    ap.add_argument("--cpu-batch", type=int, default=16, help="the 'large batch' row on the CPU")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default: 10 CUDA, 3 CPU)")
    ap.add_argument("--window-s", type=float, default=None, help="seconds per timed window (default: 2 CUDA, 8 CPU)")
    ap.add_argument("--budget-s", type=float, default=230, help="stop starting rows after this many seconds")
    ap.add_argument("--batches", default="1,max", help="which rows: 1, max or both (1,max)")
    ap.add_argument("--alternate", type=int, default=0,
                    help="time the two modes in this many alternating windows each (0: one mode after the other)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=common.OUT, help="folder for translation_speed.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device)
    args.device = str(device)
    cuda = device.type == "cuda"
    args.size = args.size or (256 if cuda else 64)
    args.widths = args.widths or ("paper" if cuda else "narrow")
    args.warmup = args.warmup or (10 if cuda else 3)
    args.window_s = args.window_s or (2.0 if cuda else 8.0)
    start = time.perf_counter()
    result: dict = {"machine": common.machine(device), "size": args.size, "widths": args.widths, "rows": [],
                    "batch_search": []}
    out = Path(args.out) / "translation_speed.json"
    variants = args.variants.split(",")
    labels = [b for b in ("1", "max") if b in args.batches.split(",")]
    for i, label in enumerate(labels):  # every batch-1 row first: the target, and the cheapest rows
        if i == len(labels) - 1 and cuda and "cyclegan" in variants and time.perf_counter() - start < args.budget_s:
            result["cyclegan_step_free_of_host_syncs"] = sync_free_cyclegan(args)
            print(f"CycleGAN step free of host syncs: {result['cyclegan_step_free_of_host_syncs']}", flush=True)
        for variant in variants:
            paired: dict[str, dict] = {}
            for mode in MODES:
                row = {"variant": variant, "size": args.size, "mode": mode, "batch_label": label,
                       "model": NARROW[variant] if args.widths == "narrow" else "paper"}
                if time.perf_counter() - start > args.budget_s and mode not in paired:
                    row.update(batch_size=label, status="skipped: --budget-s spent")
                elif args.alternate:  # both modes at once, at the batch found for eager fp32
                    if not paired:
                        alt_batch = 1 if label == "1" else largest_batch(variant, MODES[0], args,
                                                                         result["batch_search"])
                        paired = measure_alternating(variant, alt_batch, args, args.warmup)
                    row.update(batch_size=alt_batch, **paired[mode])
                elif label == "1":
                    row.update(batch_size=1, **measure(variant, mode, 1, args, args.warmup))
                else:
                    batch = largest_batch(variant, mode, args, result["batch_search"])
                    row.update(batch_size=batch, **measure(variant, mode, batch, args, min(args.warmup, 5)))
                result["rows"].append(row)
                print(table([row]).splitlines()[-1], flush=True)
                common.write_json(out, result)
    result["wall_s"] = time.perf_counter() - start
    common.write_json(out, result)
    print("\n" + table(result["rows"]))
    print(f"\nwall {result['wall_s']:.0f} s; JSON: {out}")


if __name__ == "__main__":
    main()

"""The one training loop every variant runs through.

Per step: draw an on-device batch, run the variant's `train_step` under autocast (eager,
compiled nets with train.compile, or one replayed CUDA graph with train.cuda_graphs), add its
detached losses to on-device accumulators. Every `train.log_every` steps the accumulators are
read once (the only host sync), appended to the loss history and handed to the hooks (progress
bar, MLflow). Every `train.checkpoint_every` steps and at the end the full state is written
atomically, so `resume` continues bit-for-bit on CPU.

A run whose losses (checked at each log step, where the loop reads them anyway) or weights
(checked before each checkpoint) turn NaN or infinite stops with one line and writes nothing, so a
finite checkpoint is never replaced by a diverged one. The output folders are checked writable
before any compute, and temp files left by a killed run are removed there.

Under torchrun (WORLD_SIZE > 1) every rank runs this loop on its own data shard and noise;
gradients are averaged at each optimizer step (`training.distributed`), logged losses and
images/s cover all ranks (global batch = train.batch_size x WORLD_SIZE), and only rank 0 runs
the hooks and writes checkpoints, which hold every rank's sampler and RNG state so a resumed
multi-process run continues each rank's streams.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from ganzoo.config import Config
from ganzoo.data.prepared import Prepared
from ganzoo.data.sampler import DeviceBatches
from ganzoo.data.stream import StreamBatches, should_stream
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_text, check_writable, remove_stale_temps
from ganzoo.paths import RunPaths
from ganzoo.training import distributed
from ganzoo.training.checkpoint import keep_aside, restore_state, save_checkpoint
from ganzoo.training.device import (
    make_train_step,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    use_channels_last,
)
from ganzoo.training.hooks import Hooks, Progress
from ganzoo.training.monitor import BestKeeper, Health, Monitor
from ganzoo.training.resume import plan_start, rank_state
from ganzoo.variants import registry
from ganzoo.variants.base import DataSpec


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0
    best: Path | None = None  # best.pt, when the monitor ran and kept one
    best_step: int | None = None
    stop_reason: str | None = None  # why the run ended before train.steps (alarm, early stopping)


def data_spec(prep: Prepared) -> DataSpec:
    m = prep.manifest
    # Prepared images are NCHW, so the shape after N is (C, H, W).
    shape_b = cast("tuple[int, int, int]", prep.shape("b")[1:]) if "b" in prep.tensors else None
    return DataSpec(kind=prep.kind, image_shape=prep.image_shape, num_classes=prep.num_classes,
                    classes=m.get("classes"), image_shape_b=shape_b,
                    content_hash=m.get("content_hash"), source=m.get("source"))


def check_data_fits(variant_cls, prep: Prepared, cfg: Config) -> None:
    need = variant_cls.data_kind
    have = prep.kind
    if need == "labelled":
        if have != "images" or "y" not in prep.tensors:
            raise ConfigError(f"variant {cfg.variant!r} needs labelled images but data.source="
                              f"{cfg.data.source!r} has no labels; use digits, mnist, cifar10 "
                              "or a folder with class sub-folders")
    elif need in ("paired", "unpaired"):
        if have not in ("paired", "unpaired") or (need == "paired" and have != "paired"):
            hint = "digits_paired or paired_folder" if need == "paired" else "digits_unpaired or unpaired_folder"
            raise ConfigError(f"variant {cfg.variant!r} needs {need} data but data.source={cfg.data.source!r} "
                              f"gives {have}; use data.source={hint}")
    elif have != "images":
        raise ConfigError(f"variant {cfg.variant!r} trains on images but data.source={cfg.data.source!r} "
                          f"gives {have} data; use digits, mnist, fashion_mnist, cifar10 or folder")
    if prep.manifest.get("count", 0) and prep.kind == "images" and prep.count("x") < cfg.train.batch_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {prep.count('x')} "
                          f"prepared images; lower train.batch_size")


def check_outputs(cfg: Config) -> None:
    """The run's output folders are writable (else a one-line error naming the key); stale temp
    files of a killed writer are removed. Called before anything costly (the monitor's classifier)."""
    paths = RunPaths.of(cfg)
    for folder, key in ((paths.checkpoint_dir, "train.out_dir"), (paths.metrics_dir, "train.metrics_dir")):
        check_writable(folder, key)
        remove_stale_temps(folder)


def write_history(path: Path, history: list[dict]) -> None:
    """Loss history as CSV for `dvc plots` (step + one column per loss), written atomically."""
    if not history:
        return
    cols = list(dict.fromkeys(k for row in history for k in row))  # probe metrics appear at evaluations only
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


def train_loop(cfg: Config, prep: Prepared, resume: str = "no", hooks: list[Hooks] | None = None,
               monitor: Monitor | None = None) -> TrainResult:
    """resume: 'no' starts fresh, 'yes' continues last.pt (error if incompatible), 'auto'
    continues when compatible and starts fresh otherwise (what `dvc repro` uses). `monitor`
    (rank 0's) scores a fixed probe every monitor.eval_every steps: best.pt, alarms, early stop."""
    cfg = registry.resolve(cfg)  # free when the stage resolved it already
    device = distributed.rank_device(resolve_device(cfg.train.device))
    if cfg.train.cuda_graphs and device.type != "cuda":  # before anything is built or joined
        raise ConfigError("train.cuda_graphs needs CUDA; set train.cuda_graphs=false")
    ctx = distributed.setup(device)
    try:
        run = _Run(cfg, prep, resume, device, ctx, monitor if ctx.rank == 0 else None)
        return run.loop([Progress(cfg.train.steps, run.start, cfg.train.progress), *(hooks or [])]
                        if ctx.rank == 0 else [])
    finally:
        distributed.teardown(ctx)


class _Run:
    """One run's state: set up (resume decision, variant, sampler, restored state), then the loop."""

    def __init__(self, cfg: Config, prep: Prepared, resume: str, device: torch.device,
                 ctx: distributed.DistContext, monitor: Monitor | None = None):
        self.cfg, self.device, self.ctx, self.monitor = cfg, device, ctx, monitor
        self.keeper = BestKeeper()
        self.stop_reason: str | None = None
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        check_data_fits(registry.get_variant(cfg.variant), prep, cfg)
        self.paths = RunPaths.of(cfg)
        if ctx.rank == 0:  # the writer: find an unwritable output now, not after the compute
            check_outputs(cfg)
        self.plan = plan_start(self.paths.last, cfg, resume, device, ctx.rank)
        saved = self.plan.saved
        self.had_checkpoint = self.paths.last.exists()  # decided before rank 0 may write one
        self.written: int | None = None  # the step of the last checkpoint this run wrote

        seed_everything(cfg.seed + ctx.rank)
        self.spec = data_spec(prep)
        self.variant = variant = registry.build(cfg, self.spec, device)
        if cfg.train.sync_batchnorm:
            distributed.convert_sync_batchnorm(variant.nets, device, ctx.world)
        channels_last = use_channels_last(device, cfg.train.channels_last, variant.nets)
        # Small datasets live on the device (a batch is one index gather); large ones stream from host memory.
        sampler = StreamBatches if should_stream(prep, device) else DeviceBatches
        self.batches = sampler(prep, cfg.train.batch_size, device, cfg.seed, ctx.rank, ctx.world, channels_last,
                               jitter=bool(cfg.data.jitter))
        self.batches.batches_per_step = variant.batches_per_step

        self.start, self.history = 0, []
        self.acc: dict[str, torch.Tensor] = {}
        if saved is not None:
            restore_state(variant, saved["state"], self.paths.last)
            mine = rank_state(saved, ctx)
            if "sampler" in mine:
                self.batches.load_state_dict(mine["sampler"])
                set_rng_state(mine["rng"], device)
            self.start, self.history = saved["step"], list(saved["history"])
            watch = saved.get("monitor") or {}
            self.keeper = BestKeeper.from_state(watch.get("best"))
            if monitor is not None and hasattr(monitor, "load_state_dict"):
                monitor.load_state_dict(watch.get("monitor", {}))
            self._check_fingerprint(watch.get("fingerprint"))
            self.acc = {k: v.to(device) for k, v in mine["acc"].items()}
        if ctx.world > 1:
            distributed.broadcast_state(variant.nets)  # ranks were seeded differently
            distributed.average_gradients_at_step(variant.optims, ctx.world)
        if channels_last:
            for net in variant.nets.values():
                net.to(memory_format=torch.channels_last)
        self.train_step = make_train_step(variant, device, cfg.train, ctx.world)

    def _check_fingerprint(self, saved: dict | None) -> None:
        """A best-so-far value is only beaten by a number made alike: when the monitor now measures
        differently (another probe size, classifier or seed), the record restarts, said once."""
        mine = getattr(self.monitor, "fingerprint", None)
        if mine is None or saved is None or saved.get("hash") == mine.get("hash") or self.keeper.best_step is None:
            return
        parts = [p for p in mine if p not in ("hash", "metrics") and saved.get(p) != mine.get(p)]
        if self.ctx.rank == 0:
            print(f"[ganzoo] the monitor measures differently from the checkpoint's ({', '.join(parts)} changed); "
                  f"the best-so-far record (step {self.keeper.best_step}) restarts", file=sys.stderr, flush=True)
        self.keeper = BestKeeper(alarms=self.keeper.alarms)

    def nonfinite(self) -> str | None:
        """What turned NaN/inf since the last log (the loss sums) or ever (weights, buffers), or None.
        Run before a checkpoint only: it reads the device."""
        for k, v in self.acc.items():
            if not bool(torch.isfinite(v).all()):
                return f"{k} (summed since step {self.history[-1]['step'] if self.history else self.start})"
        for name, net in self.variant.nets.items():
            flags = [t.isfinite().all() for t in net.state_dict().values() if t.is_floating_point()]
            if flags and not bool(torch.stack(flags).all()):
                return f"the weights of net {name!r}"
        return None

    def diverged(self, step: int, what: str) -> ConfigError:
        last = self.paths.last
        finite_step = self.written if self.written is not None else self.start if self.plan.saved else None
        if finite_step is not None:
            kept = f"{last} keeps step {finite_step}"
        elif last.exists():
            kept = f"{last} (not this run's) was left as it was"
        else:
            kept = "no checkpoint was written"
        return ConfigError(f"training diverged: {what} became NaN or infinite by step {step}; stopped, {kept}. "
                           "Lower the learning rate (train.lr, train.lr_g, train.lr_d) or check the data")

    def checkpoint(self, step: int, hooks: list[Hooks], path: Path | None = None) -> None:
        """last.pt (or `path`: best.pt). Every rank hands over its own streams and its finiteness
        check (a collective, so every rank calls this, and every rank stops together when one diverged)."""
        states = distributed.gather_objects({"sampler": self.batches.state_dict(), "rng": rng_state(self.device),
                                             "acc": {k: v.detach().cpu() for k, v in self.acc.items()},
                                             "nonfinite": self.nonfinite()}, self.ctx)
        bad = next((s["nonfinite"] for s in states if s["nonfinite"]), None)
        if bad is not None:
            raise self.diverged(step, bad)
        for s in states:
            del s["nonfinite"]
        if self.ctx.rank != 0:
            return
        extra = {**states[0], "history": self.history}
        if self.ctx.world > 1:
            extra["ranks"] = states
        if self.monitor is not None:  # the best-so-far record survives a resume
            extra["monitor"] = {"best": self.keeper.state_dict(),
                                "monitor": getattr(self.monitor, "state_dict", dict)(),
                                "fingerprint": dict(getattr(self.monitor, "fingerprint", None) or {})}
        target = path or self.paths.last
        if target == self.paths.last and self.plan.replaces is not None and self.plan.replaces.exists():
            kept = keep_aside(self.plan.replaces, self.plan.keep_as)
            print(f"[ganzoo] kept the previous checkpoint as {kept}")
            self.plan.replaces = None
        save_checkpoint(target, cfg=self.cfg, data=self.spec, step=step, variant=self.variant, extra=extra)
        if target == self.paths.last:
            self.written = step
            write_history(self.paths.history, self.history)
        for h in hooks:
            h.on_checkpoint(step, target)

    def evaluate(self, step: int, hooks: list[Hooks]) -> bool:
        """Score the probe (rank 0), merge it into this step's history row, keep the best, raise the
        alarm once; returns True when the run should stop (monitor.stop_on_alarm / patience)."""
        mc = self.cfg.monitor
        stop, save_best = False, False
        if self.monitor is not None:
            with self.variant.sampling():
                health: Health = self.monitor.check(self.variant, step)
            self.history[-1].update(health.metrics)
            for h in hooks:
                h.on_eval(health)
            save_best = self.keeper.update(health) and mc.keep_best
            if self.keeper.first_alarm(health):
                print(f"[ganzoo] ALARM at step {step}: {health.alarm}", file=sys.stderr, flush=True)
                for h in hooks:
                    h.on_alarm(step, health.alarm or "")
            if health.alarm is not None and mc.stop_on_alarm:
                self.stop_reason = f"stopped at step {step} by the alarm (monitor.stop_on_alarm): {health.alarm}"
            elif mc.patience and self.keeper.since_best >= mc.patience:
                self.stop_reason = (f"stopped early at step {step}: no better {health.primary} for {mc.patience} "
                                    f"evaluations (best {self.keeper.best_value:.4g} at step {self.keeper.best_step})")
            stop = self.stop_reason is not None
        if self.ctx.world > 1:  # rank 0 decided; every rank writes (a collective) and stops together
            flags = distributed.mean_over_ranks(torch.tensor([float(stop), float(save_best)], device=self.device),
                                                self.ctx)
            stop, save_best = bool(flags[0].item() > 0), bool(flags[1].item() > 0)
        if save_best:
            self.checkpoint(step, hooks, self.paths.best)
        return stop

    def loop(self, hooks: list[Hooks]) -> TrainResult:
        cfg, ctx, variant = self.cfg, self.ctx, self.variant
        for h in hooks:
            h.on_start(cfg, variant, self.start)
        variant.train()
        images_per_step = cfg.train.batch_size * variant.batches_per_step * ctx.world  # real images consumed
        window_start, window_steps = time.perf_counter(), 0
        step, last_eval, every, stopping = self.start, self.start, cfg.monitor.eval_every, False
        for step in range(self.start + 1, cfg.train.steps + 1):
            batch = self.batches.next()
            losses = self.train_step(batch)
            for k, v in losses.items():  # on-device sums: no host sync here
                self.acc[k] = self.acc[k] + v.float() if k in self.acc else v.float().clone()
            window_steps += 1
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                n = max(1, step - (self.history[-1]["step"] if self.history else 0))
                means = distributed.mean_over_ranks(torch.stack(list(self.acc.values())).div(n), ctx)
                values = dict(zip(self.acc, means.tolist(), strict=True))  # the one host sync
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    raise self.diverged(step, f"{', '.join(bad)} (mean over the last {n} steps)")
                self.acc = {}
                ips = window_steps * images_per_step / max(time.perf_counter() - window_start, 1e-9)
                self.history.append({"step": step, **values})
                for h in hooks:
                    h.on_log(step, values, ips)
                # Evaluations ride on the logging sync: at the first logged step of each
                # eval_every interval, and at the end.
                if every and (step // every > last_eval // every or step == cfg.train.steps):
                    last_eval = step
                    stopping = self.evaluate(step, hooks)
                window_start, window_steps = time.perf_counter(), 0
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps or stopping:
                self.checkpoint(step, hooks)
            if stopping:
                print(f"[ganzoo] {self.stop_reason or 'stopped by rank 0 monitor'}", file=sys.stderr, flush=True)
                break
        if step == self.start and not self.had_checkpoint:
            self.checkpoint(step, hooks)
        for h in hooks:
            h.on_end(step, self.paths.last)
        return TrainResult(checkpoint=self.paths.last, steps=step, history=self.history, resumed_from=self.start,
                           best=self.paths.best if self.keeper.best_step is not None and self.cfg.monitor.keep_best
                           else None, best_step=self.keeper.best_step, stop_reason=self.stop_reason)

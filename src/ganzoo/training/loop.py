"""The one training loop every variant runs through.

Per step: draw an on-device batch, run the variant's `train_step` under autocast (eager,
compiled nets with train.compile, or one replayed CUDA graph with train.cuda_graphs), add its
detached losses to on-device accumulators. Every `train.log_every` steps the accumulators are
read once (the only host sync), appended to the loss history and handed to the hooks (progress
bar, MLflow). Every `train.checkpoint_every` steps and at the end the full state is written
atomically, so `resume` continues bit-for-bit on CPU.

Under torchrun (WORLD_SIZE > 1) every rank runs this loop on its own data shard and noise;
gradients are averaged at each optimizer step (`training.distributed`), logged losses and
images/s cover all ranks (global batch = train.batch_size x WORLD_SIZE), and only rank 0 runs
the hooks and writes checkpoints, which hold every rank's sampler and RNG state so a resumed
multi-process run continues each rank's streams.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganzoo.config import Config, ConfigError
from ganzoo.data.prepared import Prepared, atomic_write_text
from ganzoo.data.sampler import DeviceBatches
from ganzoo.data.stream import StreamBatches, should_stream
from ganzoo.training import distributed
from ganzoo.training.checkpoint import checkpoint_dir, read_checkpoint, save_checkpoint
from ganzoo.training.device import (make_train_step, resolve_device, rng_state, seed_everything,
                                    set_rng_state, use_channels_last)
from ganzoo.variants import registry
from ganzoo.variants.base import DataSpec, Variant

# Keys that may change between a checkpoint and a resumed run without changing what is trained.
_RESUMABLE_TRAIN_KEYS = {"steps", "checkpoint_every", "log_every", "progress", "device", "threads",
                         "compile", "cuda_graphs", "out_dir", "metrics_dir"}


class Hooks:
    """Observers of a run (progress, tracking). The loop calls them; they never change training."""

    def on_start(self, cfg: Config, variant: Variant, start_step: int) -> None: ...
    def on_log(self, step: int, losses: dict[str, float], images_per_s: float) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_end(self, step: int, path: Path) -> None: ...


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def data_spec(prep: Prepared) -> DataSpec:
    m = prep.manifest
    shape_b = tuple(prep.tensors["b"].shape[1:]) if "b" in prep.tensors else None
    return DataSpec(kind=prep.kind, image_shape=prep.image_shape, num_classes=prep.num_classes,
                    classes=m.get("classes"), image_shape_b=shape_b,
                    content_hash=m.get("content_hash"), source=m.get("source"))


def check_data_fits(variant_cls, prep: Prepared, cfg: Config) -> None:
    need = variant_cls.data_kind
    have = prep.kind
    if need == "labelled":
        if have != "images" or "y" not in prep.tensors:
            raise ConfigError(f"variant {cfg.variant!r} needs labelled images but data.source="
                              f"{cfg.data.source!r} has no labels; use digits, mnist, cifar10 or a folder with class sub-folders")
    elif need in ("paired", "unpaired"):
        if have not in ("paired", "unpaired") or (need == "paired" and have != "paired"):
            hint = "digits_paired or paired_folder" if need == "paired" else "digits_unpaired or unpaired_folder"
            raise ConfigError(f"variant {cfg.variant!r} needs {need} data but data.source={cfg.data.source!r} "
                              f"gives {have}; use data.source={hint}")
    elif have != "images":
        raise ConfigError(f"variant {cfg.variant!r} trains on images but data.source={cfg.data.source!r} "
                          f"gives {have} data; use digits, mnist, fashion_mnist, cifar10 or folder")


def _as_today(saved: dict) -> dict:
    """A checkpoint's config read through today's schema, so that a hyper-parameter added since it
    was written (with its default) does not read as a change; left as saved if today's schema
    rejects it (then the comparison names what differs)."""
    try:
        return registry.resolve(Config.model_validate(saved)).model_dump(mode="json")
    except (ValueError, ConfigError):  # pydantic's ValidationError is a ValueError
        return saved


def _compatible(saved: dict, cfg: Config) -> str | None:
    """None when `saved` (a checkpoint's config) trains the same thing as `cfg`, else the key that differs."""
    saved, now = _as_today(saved), cfg.model_dump(mode="json")
    for section in ("variant", "seed", "data", "model"):
        if saved.get(section) != now.get(section):
            return section
    for k, v in now["train"].items():
        if k not in _RESUMABLE_TRAIN_KEYS and saved["train"].get(k) != v:
            return f"train.{k}"
    return None


def write_history(path: Path, history: list[dict]) -> None:
    """Loss history as CSV for `dvc plots` (step + one column per loss), written atomically."""
    if not history:
        return
    cols = list(history[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


class _Progress(Hooks):
    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
        self.last = start

    def on_log(self, step, losses, images_per_s):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{images_per_s:,.0f}"})
        self.last = step

    def on_end(self, step, path):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.close()


def _rank_state(saved: dict, ctx: distributed.DistContext) -> dict:
    """This rank's sampler/RNG/accumulator state from a checkpoint. A checkpoint written by the
    same number of processes restores every rank's own streams; otherwise rank 0 takes the
    checkpoint's and the other ranks keep their fresh seeds (the run continues, not bit-exactly)."""
    ranks = saved.get("ranks")
    if ctx.world > 1 and ranks is not None and len(ranks) == ctx.world:
        return ranks[ctx.rank]
    if ctx.world > 1 or ranks is not None:
        if ctx.is_main:
            print(f"[ganzoo] resuming a {len(ranks or [0])}-process checkpoint with {ctx.world} process(es): "
                  f"ranks other than 0 restart their data and noise streams")
        if not ctx.is_main:
            return {"acc": saved["acc"]}
    return {"sampler": saved["sampler"], "rng": saved["rng"], "acc": saved["acc"]}


def train_loop(cfg: Config, prep: Prepared, resume: str = "no", hooks: list[Hooks] | None = None) -> TrainResult:
    """resume: 'no' starts fresh, 'yes' continues last.pt (error if incompatible), 'auto'
    continues when compatible and starts fresh otherwise (what `dvc repro` uses)."""
    cfg = registry.resolve(cfg)
    device = distributed.rank_device(resolve_device(cfg.train.device))
    if cfg.train.cuda_graphs and device.type != "cuda":  # before anything is built or joined
        raise ConfigError("train.cuda_graphs needs CUDA; set train.cuda_graphs=false")
    ctx = distributed.setup(device)
    try:
        return _train(cfg, prep, resume, hooks, device, ctx)
    finally:
        distributed.teardown(ctx)


def _train(cfg: Config, prep: Prepared, resume: str, hooks: list[Hooks] | None, device: torch.device,
           ctx: distributed.DistContext) -> TrainResult:
    rank, world = ctx.rank, ctx.world
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    variant_cls = registry.get_variant(cfg.variant)
    check_data_fits(variant_cls, prep, cfg)
    if prep.manifest.get("count", 0) and prep.kind == "images" and prep.tensors["x"].shape[0] < cfg.train.batch_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {prep.tensors['x'].shape[0]} "
                          f"prepared images; lower train.batch_size")

    ckpt_dir = checkpoint_dir(cfg)
    last = ckpt_dir / "last.pt"
    history_path = Path(cfg.train.metrics_dir) / cfg.variant / "losses.csv"
    saved = None
    if resume != "no" and last.exists():
        saved = read_checkpoint(last, map_location=device)
        why = _compatible(saved["config"], cfg)
        if why is not None:
            if resume == "yes":
                raise ConfigError(f"cannot resume {last}: its {why} differs from the current config; "
                                  f"restore it or train without --resume")
            if rank == 0:
                print(f"[ganzoo] {last} was trained with a different {why}; starting fresh")
            saved = None
        elif saved["step"] > cfg.train.steps:
            if resume == "yes":
                raise ConfigError(f"cannot resume {last}: it is at step {saved['step']} > train.steps="
                                  f"{cfg.train.steps}; raise train.steps or train without --resume")
            saved = None
    elif resume == "yes":
        raise ConfigError(f"--resume: no checkpoint at {last}; train without --resume first")
    had_checkpoint = last.exists()  # decided before rank 0 may write one

    seed_everything(cfg.seed + rank)
    spec = data_spec(prep)
    variant = registry.build(cfg, spec, device)
    if cfg.train.sync_batchnorm:
        distributed.convert_sync_batchnorm(variant.nets, device, world)
    channels_last = use_channels_last(device, cfg.train.channels_last, variant.nets)
    # Small datasets live on the device (a batch is one index gather); large ones stream from host memory.
    sampler = StreamBatches if should_stream(prep, device) else DeviceBatches
    batches = sampler(prep, cfg.train.batch_size, device, cfg.seed, rank, world, channels_last)
    batches.batches_per_step = variant.batches_per_step

    start, history = 0, []
    acc: dict[str, torch.Tensor] = {}
    if saved is not None:
        variant.load_state_dict(saved["state"])
        mine = _rank_state(saved, ctx)
        if "sampler" in mine:
            batches.load_state_dict(mine["sampler"])
            set_rng_state(mine["rng"], device)
        start, history = saved["step"], list(saved["history"])
        acc = {k: v.to(device) for k, v in mine["acc"].items()}
    if world > 1:
        distributed.broadcast_state(variant.nets)  # ranks were seeded differently
        distributed.average_gradients_at_step(variant.optims, world)
    if channels_last:
        for net in variant.nets.values():
            net.to(memory_format=torch.channels_last)
    train_step = make_train_step(variant, device, cfg.train, world)

    hooks = [_Progress(cfg.train.steps, start, cfg.train.progress), *(hooks or [])] if rank == 0 else []
    for h in hooks:
        h.on_start(cfg, variant, start)

    def checkpoint(step: int) -> None:
        # Every rank hands over its own streams (a collective, so every rank calls this).
        states = distributed.gather_objects({"sampler": batches.state_dict(), "rng": rng_state(device),
                                             "acc": {k: v.detach().cpu() for k, v in acc.items()}}, ctx)
        if rank != 0:
            return
        extra = {**states[0], "history": history}
        if world > 1:
            extra["ranks"] = states
        save_checkpoint(last, cfg=cfg, data=spec, step=step, variant=variant, extra=extra)
        write_history(history_path, history)
        for h in hooks:
            h.on_checkpoint(step, last)

    variant.train()
    images_per_step = cfg.train.batch_size * variant.batches_per_step * world  # real images consumed
    window_start, window_steps = time.perf_counter(), 0
    step = start
    for step in range(start + 1, cfg.train.steps + 1):
        batch = batches.next()
        losses = train_step(batch)
        for k, v in losses.items():  # on-device sums: no host sync here
            acc[k] = acc[k] + v.float() if k in acc else v.float().clone()
        window_steps += 1
        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            n = max(1, step - (history[-1]["step"] if history else 0))
            means = distributed.mean_over_ranks(torch.stack(list(acc.values())).div(n), ctx)
            values = dict(zip(acc, means.tolist()))  # the one host sync
            acc = {}
            elapsed = time.perf_counter() - window_start
            ips = window_steps * images_per_step / max(elapsed, 1e-9)
            history.append({"step": step, **values})
            for h in hooks:
                h.on_log(step, values, ips)
            window_start, window_steps = time.perf_counter(), 0
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
            checkpoint(step)
    if step == start and not had_checkpoint:
        checkpoint(step)
    for h in hooks:
        h.on_end(step, last)
    return TrainResult(checkpoint=last, steps=step, history=history, resumed_from=start)

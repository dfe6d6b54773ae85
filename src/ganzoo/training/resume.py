"""The resume policy: whether `last.pt` continues into this run, and each rank's share of it.

`--resume no` starts fresh; `yes` continues last.pt (an error when it trains something else or is
past train.steps); `auto` (what `dvc repro` and the flows use) continues when compatible and
starts fresh otherwise, saying why.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganzoo.config import Config
from ganzoo.errors import ConfigError
from ganzoo.training import distributed
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.variants import registry

# Keys that may change between a checkpoint and a resumed run without changing what is trained.
RESUMABLE_TRAIN_KEYS = {"steps", "checkpoint_every", "log_every", "progress", "device", "threads",
                        "compile", "cuda_graphs", "out_dir", "metrics_dir"}


def _as_today(saved: dict) -> dict:
    """A checkpoint's config read through today's schema, so that a hyper-parameter added since it
    was written (with its default) does not read as a change; left as saved if today's schema
    rejects it (then the comparison names what differs)."""
    try:
        return registry.resolve(Config.model_validate(saved)).model_dump(mode="json")
    except (ValueError, ConfigError):  # pydantic's ValidationError is a ValueError
        return saved


def incompatibility(saved: dict, cfg: Config) -> str | None:
    """None when `saved` (a checkpoint's config) trains the same thing as `cfg`, else the key that differs."""
    saved, now = _as_today(saved), cfg.model_dump(mode="json")
    for section in ("variant", "seed", "data", "model"):
        if saved.get(section) != now.get(section):
            return section
    for k, v in now["train"].items():
        if k not in RESUMABLE_TRAIN_KEYS and saved["train"].get(k) != v:
            return f"train.{k}"
    return None


def checkpoint_to_resume(last: Path, cfg: Config, resume: str, device: torch.device, rank: int) -> dict | None:
    """The checkpoint this run continues, or None to start fresh (see the module docstring)."""
    if resume == "no" or not last.exists():
        if resume == "yes":
            raise ConfigError(f"--resume: no checkpoint at {last}; train without --resume first")
        return None
    saved = read_checkpoint(last, map_location=device)
    why = incompatibility(saved["config"], cfg)
    if why is not None:
        if resume == "yes":
            raise ConfigError(f"cannot resume {last}: its {why} differs from the current config; "
                              f"restore it or train without --resume")
        if rank == 0:
            print(f"[ganzoo] {last} was trained with a different {why}; starting fresh")
        return None
    if saved["step"] > cfg.train.steps:
        if resume == "yes":
            raise ConfigError(f"cannot resume {last}: it is at step {saved['step']} > train.steps="
                              f"{cfg.train.steps}; raise train.steps or train without --resume")
        return None
    return saved


def rank_state(saved: dict, ctx: distributed.DistContext) -> dict:
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

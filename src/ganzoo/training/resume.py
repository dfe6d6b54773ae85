"""The resume policy: whether `last.pt` continues into this run, and each rank's share of it.

`--resume no` starts fresh; `yes` continues last.pt (an error when it trains something else or is
past train.steps); `auto` (what `dvc repro` and the flows use) continues when compatible and
starts fresh otherwise, saying why.

A checkpoint is never silently replaced: a run that starts fresh where `last.pt` exists (`no`, or
`auto` meeting another config or a checkpoint past train.steps) keeps that file as
`step-<N>.pt` beside it when it writes its own first checkpoint, and says so at the start. A run
that stops before its first checkpoint leaves `last.pt` as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ganzoo.config import Config
from ganzoo.errors import ConfigError
from ganzoo.training import distributed
from ganzoo.training.checkpoint import checkpoint_step, kept_name, read_checkpoint
from ganzoo.variants import registry

# Keys that may change between a checkpoint and a resumed run without changing what is trained.
RESUMABLE_TRAIN_KEYS = {"steps", "checkpoint_every", "log_every", "progress", "device", "threads",
                        "compile", "cuda_graphs", "out_dir", "metrics_dir"}


def _as_today(saved: dict) -> dict:
    """A checkpoint's config read through today's schema, so that a hyper-parameter added since it
    was written (with its default) does not read as a change; left as saved if today's schema
    rejects it (then the comparison names what differs). A key whose default changed since reads
    as the value the checkpoint trained with (registry.as_trained)."""
    saved = registry.as_trained(saved)
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


@dataclass
class StartPlan:
    """How a run begins: the checkpoint it continues (None: fresh), and the existing last.pt it
    does not continue, to keep as `keep_as` before this run writes its first checkpoint."""

    saved: dict | None = None
    replaces: Path | None = None
    keep_as: Path | None = None


def plan_start(last: Path, cfg: Config, resume: str, device: torch.device, rank: int) -> StartPlan:
    """The checkpoint this run continues, or a fresh start that keeps the old one (module docstring)."""
    if not last.exists():
        if resume == "yes":
            raise ConfigError(f"--resume: no checkpoint at {last}; train without --resume first")
        return StartPlan()
    if resume == "no":
        return _fresh(last, checkpoint_step(last), "--resume no", rank)
    saved = read_checkpoint(last, map_location=device)
    why = incompatibility(saved["config"], cfg)
    if why is not None:
        if resume == "yes":
            raise ConfigError(f"cannot resume {last}: its {why} differs from the current config; "
                              f"restore it or train with --resume no (which keeps it as step-<N>.pt)")
        return _fresh(last, saved["step"], f"it was trained with a different {why}", rank)
    if saved["step"] > cfg.train.steps:
        if resume == "yes":
            raise ConfigError(f"cannot resume {last}: it is at step {saved['step']} > train.steps="
                              f"{cfg.train.steps}; raise train.steps, or train with --resume no "
                              "(which keeps it as step-<N>.pt)")
        return _fresh(last, saved["step"], f"it is at step {saved['step']}, past train.steps={cfg.train.steps} "
                      "(raise train.steps to continue it instead)", rank)
    return StartPlan(saved=saved)


def _fresh(last: Path, step: int | None, why: str, rank: int) -> StartPlan:
    keep_as = kept_name(last, step)
    if rank == 0:
        print(f"[ganzoo] starting fresh instead of continuing {last}: {why}; that checkpoint is kept "
              f"as {keep_as} when this run writes its first one")
    return StartPlan(replaces=last, keep_as=keep_as)


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

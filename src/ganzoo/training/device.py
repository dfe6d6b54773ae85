"""Device, precision and distributed plumbing shared by training, evaluation and sampling."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext

import torch

from ganzoo.config import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{rank}")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r} but no CUDA device is visible; use train.device=cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device = 'mps' but MPS is not available; use train.device=cpu or auto")
    return torch.device(name)


def autocast_context(device: torch.device, amp: str):
    """bf16 autocast on CUDA by default (no GradScaler needed, unlike fp16); fp32 on CPU, where
    bf16 matmuls are slower on most machines and would change the numbers tests pin down."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def use_channels_last(device: torch.device, setting: str) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = random.getstate()
    random.setstate((py[0], tuple(state["python"]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) for a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

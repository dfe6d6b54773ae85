"""Checkpoints: one file holding the resolved config, data spec, step, every network and
optimizer, the sampler and RNG states and the loss history. Written atomically (temp + rename,
so a kill mid-write leaves the previous checkpoint intact), read with weights_only=True (no
pickle code execution from a downloaded file: one that carries code is refused as unsafe).

A run that starts fresh where a `last.pt` exists keeps that file as `step-<N>.pt` beside it
(`keep_aside`), so no training is lost to a shorter or different run (see training.resume).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ganzoo.config import Config, config_from_dict
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_bytes
from ganzoo.variants import registry
from ganzoo.variants.base import DataSpec, Variant

FORMAT_VERSION = 1  # bump when a checkpoint written now could not be read by older code


def save_checkpoint(path: Path, *, cfg: Config, data: DataSpec, step: int, variant: Variant, extra: dict) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "step": step,
        "variant": variant.name,
        "state": variant.state_dict(),
        **extra,
    }
    atomic_write_bytes(Path(path), lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint {str(p)!r} not found; train first (`ganzoo train`) or pass an existing .pt file")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- truncated or foreign file: torch/pickle raise many kinds
        refused = _refused_content(exc)
        if refused is not None:
            what = ("it carries code to run on load" if refused.startswith("GLOBAL")
                    else "it holds more than tensors and plain data")
            raise ConfigError(f"checkpoint {str(p)!r} was refused as unsafe: {what} ({refused}), which ganzoo "
                              "never executes; use a checkpoint that `ganzoo train` wrote, from a source you "
                              "trust") from None
        raise ConfigError(f"checkpoint {str(p)!r} is unreadable ({type(exc).__name__}); "
                          "it is not a ganzoo checkpoint or it is corrupt (truncated?)") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state" not in ckpt:
        raise ConfigError(f"checkpoint {str(p)!r} is not a ganzoo checkpoint (no config/state inside)")
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        import ganzoo

        raise ConfigError(f"checkpoint {str(p)!r} has format version {version!r}, newer than this ganzoo "
                          f"{ganzoo.__version__} reads ({FORMAT_VERSION}); upgrade ganzoo to load it")
    return ckpt


def _refused_content(exc: Exception) -> str | None:
    """What torch's weights-only unpickler refused ('GLOBAL posix.system': a callable, i.e. code;
    'Unsupported operand 149': an opcode beyond its safe subset), or None when the failure is
    something else (a truncated or foreign file)."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"GLOBAL {found.group(1)}"
    lines = [line.strip() for line in text.splitlines() if "nsupported" in line]
    return lines[0][:120] if lines else None


def restore_state(variant: Variant, state: dict, path: str | Path, with_optim: bool = True) -> None:
    """Load a checkpoint's state into `variant` (built from the checkpoint's own config), with one
    line when the weights do not fit that config (an edited file, or one that mixes two runs)."""
    try:
        variant.load_state_dict(state, with_optim=with_optim)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        for line in str(exc).splitlines()[1:]:  # torch puts the useful "size mismatch for ..." second
            if "mismatch" in line or "Missing key" in line or "Unexpected key" in line:
                first = line.strip()
                break
        raise ConfigError(f"checkpoint {str(path)!r}: its weights do not fit its own config "
                          f"({first[:200]}); the file was edited or mixes two runs: retrain it or restore "
                          "the original") from None


def load_variant(path_or_ckpt, device="cpu", with_optim: bool = False) -> tuple[Variant, Config, dict]:
    """Rebuild a trained variant from its checkpoint alone (no params.yaml, no data)."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else read_checkpoint(path_or_ckpt)
    where = "checkpoint" if isinstance(path_or_ckpt, dict) else str(path_or_ckpt)
    cfg = config_from_dict(registry.as_trained(ckpt["config"]), source=f"{where}: config")
    try:
        data = DataSpec.model_validate(ckpt["data"])
        variant = registry.build(cfg, data, device)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"checkpoint {where!r}: its config or data spec cannot rebuild the model "
                          f"({type(exc).__name__}: {first}); the file was edited or is damaged: retrain it "
                          "or restore the original") from None
    restore_state(variant, ckpt["state"], where, with_optim=with_optim)
    variant.eval()
    return variant, cfg, ckpt


# --------------------------------------------------------------------------- keeping a replaced checkpoint

def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint file reached, or None when it cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: no full read
        step = ckpt.get("step") if isinstance(ckpt, dict) else None
    except Exception:  # noqa: BLE001 -- a damaged file is kept under a plain name instead
        return None
    return step if isinstance(step, int) else None


def kept_name(last: Path, step: int | None) -> Path:
    """A free name beside `last` for keeping it: step-<N>.pt, step-<N>.2.pt, ... (previous.pt,
    previous.2.pt, ... when its step cannot be read)."""
    stem = f"step-{step}" if step is not None else "previous"
    candidate, k = last.with_name(f"{stem}.pt"), 1
    while candidate.exists():
        k += 1
        candidate = last.with_name(f"{stem}.{k}.pt")
    return candidate


def keep_aside(last: Path, target: Path | None = None) -> Path:
    """Rename `last` to `target` (or a free step-named file beside it) and return the new path.
    A rename, not a copy: instant, and atomic on the same filesystem."""
    target = target if target is not None and not target.exists() else kept_name(last, checkpoint_step(last))
    os.rename(last, target)
    return target

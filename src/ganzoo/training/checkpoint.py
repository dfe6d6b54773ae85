"""Checkpoints: one file holding the resolved config, data spec, step, every network and
optimizer, the sampler and RNG states and the loss history. Written atomically (temp + rename,
so a kill mid-write leaves the previous checkpoint intact), read with weights_only=True (no
pickle code execution from a downloaded file)."""

from __future__ import annotations

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
        raise ConfigError(f"checkpoint {str(p)!r} is unreadable ({type(exc).__name__}); "
                          "it is not a ganzoo checkpoint or it is corrupt") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state" not in ckpt:
        raise ConfigError(f"checkpoint {str(p)!r} is not a ganzoo checkpoint (no config/state inside)")
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        import ganzoo

        raise ConfigError(f"checkpoint {str(p)!r} has format version {version!r}, newer than this ganzoo "
                          f"{ganzoo.__version__} reads ({FORMAT_VERSION}); upgrade ganzoo to load it")
    return ckpt


def load_variant(path_or_ckpt, device="cpu", with_optim: bool = False) -> tuple[Variant, Config, dict]:
    """Rebuild a trained variant from its checkpoint alone (no params.yaml, no data)."""
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else read_checkpoint(path_or_ckpt)
    cfg = config_from_dict(ckpt["config"], source="checkpoint config")
    data = DataSpec.model_validate(ckpt["data"])
    variant = registry.build(cfg, data, device)
    variant.load_state_dict(ckpt["state"], with_optim=with_optim)
    variant.eval()
    return variant, cfg, ckpt

"""Test helpers (factories and builders), importable as `tests.helpers`; fixtures stay in conftest.py."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ganzoo.config import apply_override
from ganzoo.data.prepared import Prepared


# --------------------------------------------------------------------------- tiny data for fast CPU runs
def make_prepared(kind: str = "images", n: int = 24, size: int = 16, channels: int = 1,
                  classes: int = 10, seed: int = 0) -> Prepared:
    """Random uint8 images in the prepared format (labels for `images`, pairs for translation)."""
    g = torch.Generator().manual_seed(seed)

    def imgs(c=channels, m=n):
        return torch.randint(0, 256, (m, c, size, size), generator=g, dtype=torch.uint8)

    manifest = {"source": "synthetic", "classes": [str(i) for i in range(classes)], "content_hash": f"syn{seed}"}
    if kind == "images":
        y = torch.arange(n) % classes
        return Prepared("images", {"x": imgs(), "y": y}, manifest)
    tensors = {"a": imgs(), "b": imgs(), "a_test": imgs(m=4), "b_test": imgs(m=4)}
    return Prepared(kind, tensors, manifest)


# --------------------------------------------------------------------------- tiny params.yaml for the flows
TINY_PARAMS = [
    "variant=dcgan", "data.image_size=16", "data.limit=96",
    "train.steps=4", "train.batch_size=16", "train.checkpoint_every=4", "train.log_every=2",
    "train.progress=false", "train.device=cpu",
    "model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=16",
    "model.gan.hidden=16", "model.gan.z_dim=16",
    "eval.n_samples=32", "eval.batch_size=32", "eval.classifier_steps=5", "eval.kid_subset_size=16",
    "tracking.enabled=false",
]


def write_params(folder: Path, extra: list[str] | tuple[str, ...] = ()) -> Path:
    """A params.yaml in `folder` holding TINY_PARAMS plus `extra` overrides."""
    raw: dict = {}
    for assignment in [*TINY_PARAMS, *extra]:
        apply_override(raw, assignment)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path

"""Sample sheets logged during training: the same noise (a fixed torch.Generator seed) or the same
input batch every time, so the MLflow image slider shows the generator's evolution."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid

from ganzoo.config import Config
from ganzoo.data.images import to_uint8, to_unit_range
from ganzoo.data.prepared import load_prepared, prepared_path

SHEET_SEED = 1234
SHEET_SIZE = 64
TRANSLATE_SIZE = 8


def translation_inputs(cfg: Config, paired: bool, n: int = TRANSLATE_SIZE) -> dict[str, torch.Tensor]:
    """The first n test inputs (else training inputs) of the prepared data, with their targets when
    paired, uint8 NCHW; memory-mapped so a large dataset is not read twice."""
    tensors = load_prepared(prepared_path(cfg.data)).tensors
    split = "_test" if tensors.get("a_test") is not None and len(tensors["a_test"]) else ""
    out = {"a": tensors[f"a{split}"][:n].clone()}
    if paired and f"b{split}" in tensors:
        out["b"] = tensors[f"b{split}"][:n].clone()
    return out


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def to_hwc_uint8(images: torch.Tensor, nrow: int) -> np.ndarray:
    """[-1, 1] NCHW -> one uint8 HWC grid."""
    grid = make_grid(_rgb(images.float().cpu()), nrow=nrow, padding=2, pad_value=-1.0)
    return to_uint8(grid).permute(1, 2, 0).numpy()


def sample_sheet(variant, inputs: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """A grid of samples (one column per class for conditional variants) or, for translation
    variants, rows of inputs, translations and targets (where paired)."""
    with variant.sampling():
        if variant.translates:
            assert inputs is not None, "translation sheets show inputs (see translation_inputs)"
            x = to_unit_range(inputs["a"]).to(variant.device)
            rows = [x, variant.translate(x, "AtoB").float()]
            if "b" in inputs:
                rows.append(to_unit_range(inputs["b"]).to(variant.device))
            return to_hwc_uint8(torch.cat([_rgb(r) for r in rows]), nrow=len(x))
        gen = torch.Generator(device=variant.device).manual_seed(SHEET_SEED)
        labels, nrow, n = None, 8, SHEET_SIZE
        classes = variant.data.num_classes
        if variant.takes_labels and classes:
            nrow = classes if classes <= 16 else 8  # one column per class where it fits
            n = nrow * max(1, SHEET_SIZE // nrow)
            labels = torch.arange(n, device=variant.device) % classes
        images = variant.sample(n, generator=gen, labels=labels)
        return to_hwc_uint8(images, nrow=nrow)

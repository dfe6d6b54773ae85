"""Inference with a trained variant, shared by `ganzoo sample` / `translate`, evaluation and the
served MLflow model: seeded generation, parsing of labels and codes, writing samples, and
translating image files. Takes a built Variant; loading one (from a checkpoint or a model URI)
is the caller's business (`ganzoo.stages`, `ganzoo.tracking.pyfunc`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.data.images import IMAGE_EXTS, list_images, read_image, save_grid, to_uint8, to_unit_range, write_png
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_bytes
from ganzoo.variants.translation import check_direction

TRANSLATE_BATCH = 64


# --------------------------------------------------------------------------- arguments

def parse_labels(text: str | None, n: int, num_classes: int | None) -> torch.Tensor | None:
    """`--labels 0,1` -> n class indices, repeated to fill n (0,1,0,1 for n=4)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated class indices, e.g. --labels 0,1,2") from None
    if not values:
        raise ConfigError("--labels is empty; give class indices, e.g. --labels 0,1,2")
    if num_classes is not None:
        bad = [v for v in values if not 0 <= v < num_classes]
        if bad:
            raise ConfigError(f"--labels: {bad[0]} is out of range; classes are 0..{num_classes - 1}")
    return torch.tensor([values[i % len(values)] for i in range(n)], dtype=torch.long)


def parse_codes(text: str | None) -> dict | None:
    """`--codes cat=3,c1=-1.5` -> {'cat': 3, 'c1': -1.5}."""
    if text is None:
        return None
    out: dict[str, int | float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"--codes {text!r}: expected NAME=VALUE pairs, e.g. --codes cat=3,c1=0.5")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"--codes: {part!r} has a non-numeric value") from None
    return out


def check_conditions(variant, labels=None, codes=None) -> None:
    """ConfigError when the variant cannot generate at all, or not with these labels/codes."""
    if variant.translates:
        raise ConfigError(f"variant {variant.name!r} translates images and needs inputs; "
                          f"use `ganzoo translate CHECKPOINT --input DIR --out DIR`")
    if labels is not None and not variant.takes_labels:
        raise ConfigError(f"variant {variant.name!r} is unconditional and takes no --labels; drop --labels")
    if codes is not None and not variant.takes_codes:
        raise ConfigError(f"variant {variant.name!r} takes no --codes (only infogan does); drop --codes")


# --------------------------------------------------------------------------- generation

@torch.no_grad()
def generate(variant, n: int, seed: int = 0, labels: torch.Tensor | None = None, codes: dict | None = None,
             batch_size: int = 500) -> torch.Tensor:
    """n images in [-1, 1] (NCHW, CPU), reproducible for a given seed."""
    check_conditions(variant, labels, codes)
    variant.eval()
    gen = torch.Generator(device=variant.device)
    gen.manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        lab = labels[i:i + m].to(variant.device) if labels is not None else None
        out.append(variant.sample(m, generator=gen, labels=lab, codes=codes).float().cpu())
    return torch.cat(out)


def write_samples(images: torch.Tensor, out: str | Path, labels: torch.Tensor | None = None,
                  nrow: int | None = None) -> Path:
    """`.npz` with uint8 `images` (N, H, W, C) (+ `labels`), or a `.png` grid."""
    out = Path(out)
    if out.suffix == ".npz":
        # Any: mypy checks **arrays against savez_compressed's `allow_pickle: bool` too
        arrays: dict[str, Any] = {"images": to_uint8(images).permute(0, 2, 3, 1).numpy()}
        if labels is not None:
            arrays["labels"] = labels.numpy().astype(np.int64)
        atomic_write_bytes(out, lambda f: np.savez_compressed(f, **arrays))
    elif out.suffix.lower() == ".png":
        save_grid(images, out, nrow=nrow or max(1, int(len(images) ** 0.5)))
    else:
        raise ConfigError(f"--out {str(out)!r}: use a .npz (arrays) or .png (grid) file name")
    return out


# --------------------------------------------------------------------------- translation

def input_files(path: Path) -> list[Path]:
    """An image file, or the images directly in a folder (sorted); their stems must differ."""
    if not path.exists():
        raise ConfigError(f"--input {str(path)!r} does not exist; pass an image file or a folder of images")
    if path.is_file():
        return [path]
    files = list_images(path)
    if not files:
        raise ConfigError(f"--input {str(path)!r} holds no images ({', '.join(IMAGE_EXTS)}); "
                          "pass a folder with images in it (sub-folders are not read)")
    stems: dict[str, Path] = {}
    for p in files:  # a.png and a.jpg would both write a.png
        if p.stem in stems:
            raise ConfigError(f"{stems[p.stem].name} and {p.name} in {path} would both be written as "
                              f"{p.stem}.png; rename one")
        stems[p.stem] = p
    return files


def source_shape(variant, direction: str) -> tuple[int, int, int]:
    """The (C, H, W) a translation in `direction` takes: domain A for AtoB, B for BtoA."""
    data = variant.data
    return tuple(data.image_shape if direction == "AtoB" else (data.image_shape_b or data.image_shape))


def translate_files(variant, input: str | Path, out_dir: str | Path, direction: str = "AtoB",
                    seed: int = 0) -> list[Path]:
    """Translate an image file or every image in a folder; writes `<out_dir>/<stem>.png` each.

    Each input is converted to the source domain's channel count and size (centre crop to square,
    bicubic resize), as `prepare` does; returns the written paths. Files go through in sorted
    batches of TRANSLATE_BATCH; batch i draws pix2pix's test-time noise from seed + i, so the
    same folder and seed give the same images."""
    if not variant.translates:
        raise ConfigError(f"a {variant.name} model generates from noise and does not translate; use "
                          "`ganzoo sample`, or a pix2pix/cyclegan/discogan checkpoint")
    check_direction(variant, direction)  # before reading any input
    files = input_files(Path(input))
    channels, size, _ = source_shape(variant, direction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant.eval()
    written = []
    for i in range(0, len(files), TRANSLATE_BATCH):
        chunk = files[i:i + TRANSLATE_BATCH]
        x = torch.stack([torch.from_numpy(read_image(p, channels, size)) for p in chunk])
        seed_i = seed + i // TRANSLATE_BATCH
        y = variant.translate(to_unit_range(x).to(variant.device), direction, seed=seed_i).float().cpu()
        for p, img in zip(chunk, y, strict=True):
            written.append(write_png(img, out / f"{p.stem}.png"))
    return written

"""`ganzoo translate CHECKPOINT --input DIR_OR_FILE --out DIR [--direction AtoB|BtoA]`.

Reads an image or every image directly in a folder, converts each to the channel count and
size of the checkpoint's source domain (A for AtoB, B for BtoA; centre crop to square, bicubic
resize), translates in batches and writes `<out>/<stem>.png` for each input.

Directions are the model's own: AtoB maps its training input to its training target, so a
pix2pix model trained with data.direction=BtoA maps real B images with --direction AtoB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganzoo.config import ConfigError
from ganzoo.data.prepared import to_uint8
from ganzoo.data.sources import IMAGE_EXTS, _open, _square_resize, _to_mode
from ganzoo.variants.pix2pix import check_direction

BATCH = 64


def input_files(path: Path) -> list[Path]:
    if not path.exists():
        raise ConfigError(f"--input {str(path)!r} does not exist; pass an image file or a folder of images")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ConfigError(f"--input {str(path)!r} holds no images ({', '.join(IMAGE_EXTS)}); "
                          "pass a folder with images in it (sub-folders are not read)")
    stems = {}
    for p in files:  # a.png and a.jpg would both write a.png
        if p.stem in stems:
            raise ConfigError(f"{stems[p.stem].name} and {p.name} in {path} would both be written as "
                              f"{p.stem}.png; rename one")
        stems[p.stem] = p
    return files


def read_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """One file -> float [-1, 1] (channels, size, size)."""
    with _open(path, load=True) as im:  # DataError naming the file when it cannot be decoded
        a = np.asarray(_square_resize(_to_mode(im, channels), size), dtype=np.float32)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a)).div_(127.5).sub_(1.0)


def write_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    a = to_uint8(image).permute(1, 2, 0).numpy()
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)


def translate_path(checkpoint, input, out_dir, direction: str = "AtoB", device: str = "cpu") -> list[Path]:
    """Translate an image file or a folder of images; returns the written PNG paths."""
    from ganzoo.training.checkpoint import load_variant

    variant, _, _ = load_variant(checkpoint, device=device)
    if not variant.translates:
        raise ConfigError(f"{checkpoint} is a {variant.name} checkpoint, which generates from noise and does not "
                          "translate; use `ganzoo sample`, or a pix2pix/cyclegan/discogan checkpoint")
    check_direction(variant, direction)  # before reading any input
    files = input_files(Path(input))
    shape = variant.data.image_shape if direction == "AtoB" else (variant.data.image_shape_b or variant.data.image_shape)
    channels, size = shape[0], shape[1]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(0, len(files), BATCH):
        chunk = files[i:i + BATCH]
        x = torch.stack([read_image(p, channels, size) for p in chunk]).to(variant.device)
        y = variant.translate(x, direction).float().cpu()
        for p, img in zip(chunk, y):
            target = out / f"{p.stem}.png"
            write_png(img, target)
            written.append(target)
    return written

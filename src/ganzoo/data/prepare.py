"""`ganzoo prepare`: source -> resized, channel-converted uint8 tensors -> `<prepared_dir>/<source>-<size>/`.

Every check runs before anything is written, and `save_prepared` writes atomically, so a failed
prepare leaves an existing prepared dataset as it was.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
import torch.nn.functional as F

from ganzoo.data.prepared import KIND_KEYS, DataError, Prepared, prepared_path, save_prepared
from ganzoo.data.sources import TRANSLATION_SOURCES, RawImages, load_images

# Filled by `ganzoo.data.translation` (imported lazily: only translation sources need it). That
# module either registers into this dict itself or exposes `BUILDERS` with the same shape.
TRANSLATION_BUILDERS: dict[str, Callable[..., Prepared]] = {}
TRANSLATION_MODULE = "ganzoo.data.translation"

CHUNK = 1024  # images resized at once: bounds the float copy's memory
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for RGB -> grayscale


def prepare_data(data_cfg, batch_size: int | None = None) -> Prepared:
    """Build the prepared dataset for `data_cfg`, save it, return it."""
    if data_cfg.source in TRANSLATION_SOURCES:
        prep = translation_builder(data_cfg.source)(data_cfg)
        for key in ("source", "root", "image_size"):  # same manifest basics as image sources
            prep.manifest.setdefault(key, getattr(data_cfg, key))
    else:
        prep = images_prepared(data_cfg, load_images(data_cfg))
    check_batch(prep, data_cfg, batch_size)
    save_prepared(prep, prepared_path(data_cfg))
    return prep


def translation_builder(source: str) -> Callable[..., Prepared]:
    if source not in TRANSLATION_BUILDERS:
        try:
            module = importlib.import_module(TRANSLATION_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != TRANSLATION_MODULE:  # a missing dependency inside it is a real bug
                raise
            raise DataError(f"data.source={source!r} is not available in this build "
                            f"({TRANSLATION_MODULE} is missing); use another data.source") from None
        for name, fn in getattr(module, "BUILDERS", {}).items():
            TRANSLATION_BUILDERS.setdefault(name, fn)
    if source not in TRANSLATION_BUILDERS:
        raise DataError(f"data.source={source!r} is not available ({TRANSLATION_MODULE} does not build it); "
                        "use another data.source")
    return TRANSLATION_BUILDERS[source]


def images_prepared(data_cfg, raw: RawImages) -> Prepared:
    x, y = raw.images, raw.labels
    if data_cfg.limit is not None:  # first N: cheaper to cut before resizing
        x, y = x[:data_cfg.limit], (y[:data_cfg.limit] if y is not None else None)
    x = convert(x, data_cfg.image_size, data_cfg.channels)
    tensors = {"x": x.contiguous()}
    if y is not None:
        tensors["y"] = y.to(torch.int64).contiguous()
    manifest = {
        "source": data_cfg.source,
        "root": data_cfg.root,
        "image_size": data_cfg.image_size,
        "channels": int(x.shape[1]),
        "classes": raw.classes,
        "origin": raw.origin,
        "limit": data_cfg.limit,
    }
    return Prepared(kind="images", tensors=tensors, manifest=manifest)


def convert(x: torch.Tensor, size: int, channels: int | None) -> torch.Tensor:
    """uint8 NCHW -> uint8 N,channels,size,size (bilinear, antialiased when shrinking)."""
    if x.shape[1] not in (1, 3):
        raise DataError(f"images have {x.shape[1]} channels; only 1 or 3 are supported")
    if x.shape[-2:] == (size, size) and channels in (None, x.shape[1]):
        return x
    return torch.cat([_convert_chunk(x[i:i + CHUNK], size, channels) for i in range(0, len(x), CHUNK)])


def _convert_chunk(x: torch.Tensor, size: int, channels: int | None) -> torch.Tensor:
    f = x.float()
    if channels == 1 and f.shape[1] == 3:  # before resizing: a third of the work
        f = (f * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if f.shape[-2:] != (size, size):
        f = F.interpolate(f, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    out = f.round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and out.shape[1] == 1:  # last: no need to resize or round copies
        out = out.repeat(1, 3, 1, 1)
    return out


def check_batch(prep: Prepared, data_cfg, batch_size: int | None) -> None:
    """Training draws batch_size images per step; fewer images than that is a config error."""
    if batch_size is None:
        return
    counts = {k: int(prep.tensors[k].shape[0]) for k in KIND_KEYS[prep.kind]}
    key, n = min(counts.items(), key=lambda kv: kv[1])
    if n >= batch_size:
        return
    where = data_cfg.source + (f" ({data_cfg.root})" if data_cfg.root else "")
    part = f" (tensor {key})" if prep.kind != "images" else ""
    cut = f" after data.limit={data_cfg.limit}" if data_cfg.limit else ""
    fix = "raise data.limit, " if data_cfg.limit else ""
    raise DataError(f"only {n} images in {where}{part}{cut}, fewer than train.batch_size={batch_size}; "
                    f"lower train.batch_size, {fix}or add images")

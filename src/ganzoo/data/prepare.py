"""`ganzoo prepare`: source -> resized, channel-converted uint8 tensors -> `<prepared_dir>/<source>-<size>/`.

Every check runs before anything is written, and `save_prepared` writes atomically, so a failed
prepare leaves an existing prepared dataset as it was.
"""

from __future__ import annotations

import torch

from ganzoo.data.images import convert
from ganzoo.data.prepared import KIND_KEYS, Prepared, prepared_path, save_prepared
from ganzoo.data.sources import TRANSLATION_SOURCES, RawImages, load_images
from ganzoo.data.translation import TRANSLATION_BUILDERS
from ganzoo.errors import DataError


def prepare_data(data_cfg, batch_size: int | None = None) -> Prepared:
    """Build the prepared dataset for `data_cfg`, save it, return it."""
    if data_cfg.source in TRANSLATION_SOURCES:
        prep = TRANSLATION_BUILDERS[data_cfg.source](data_cfg)
        for key in ("source", "root", "image_size"):  # same manifest basics as image sources
            prep.manifest.setdefault(key, getattr(data_cfg, key))
    else:
        prep = images_prepared(data_cfg, load_images(data_cfg))
    check_batch(prep, data_cfg, batch_size)
    save_prepared(prep, prepared_path(data_cfg))
    return prep


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

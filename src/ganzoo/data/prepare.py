"""`ganzoo prepare`: source -> resized, channel-converted uint8 arrays -> `<prepared_dir>/<source>-<size>/`.

Image folders are decoded a chunk of rows at a time while the arrays are written (ganzoo.data.rows),
so prepare's memory stays bounded however many files the folder holds. The checks that need no
decoding (layout, counts against train.batch_size) run before anything is written; a file that
fails to decode stops the write, and `save_prepared` only swaps a complete dataset into place,
so a failed prepare leaves an existing prepared dataset as it was.
"""

from __future__ import annotations

from ganzoo.data.prepared import KIND_KEYS, Prepared, load_prepared, prepared_path, save_prepared
from ganzoo.data.rows import ArrayRows, FileRows
from ganzoo.data.sources import TRANSLATION_SOURCES, RawImages, load_images
from ganzoo.data.translation import TRANSLATION_BUILDERS
from ganzoo.errors import DataError


def prepare_data(data_cfg, batch_size: int | None = None, chunk_bytes: int | None = None) -> Prepared:
    """Build the prepared dataset for `data_cfg`, save it, return it as stored (memory-mapped)."""
    if data_cfg.source in TRANSLATION_SOURCES:
        prep = TRANSLATION_BUILDERS[data_cfg.source](data_cfg)
        for key in ("source", "root", "image_size"):  # same manifest basics as image sources
            prep.manifest.setdefault(key, getattr(data_cfg, key))
    else:
        prep = images_prepared(data_cfg, load_images(data_cfg, lazy=True))
    check_batch(prep, data_cfg, batch_size)
    out = save_prepared(prep, prepared_path(data_cfg), chunk_bytes)
    where = data_cfg.root or data_cfg.source
    for report in {id(r): r for r in (getattr(v, "report", None) for v in prep.tensors.values()) if r}.values():
        report.warn(where)  # once per prepare, with the count
    return load_prepared(out)  # verified by its own write: no second hash


def images_prepared(data_cfg, raw: RawImages) -> Prepared:
    x, y = raw.images, raw.labels
    rows: FileRows | ArrayRows
    if isinstance(x, FileRows):  # decoded at the target size while written; limit applied already
        rows = x
    else:
        if data_cfg.limit is not None:  # first N: cheaper to cut before resizing
            x, y = x[:data_cfg.limit], (y[:data_cfg.limit] if y is not None else None)
        rows = ArrayRows(x, data_cfg.image_size, data_cfg.channels)
    tensors: dict = {"x": rows}
    if y is not None:
        tensors["y"] = y.long().contiguous()
    if raw.test_images is not None:
        tensors["x_test"] = ArrayRows(raw.test_images, data_cfg.image_size, data_cfg.channels)
        if raw.test_labels is not None:
            tensors["y_test"] = raw.test_labels.long().contiguous()
    manifest = {
        "source": data_cfg.source,
        "root": data_cfg.root,
        "image_size": data_cfg.image_size,
        "channels": int(rows.shape[1]),
        "classes": raw.classes,
        "origin": raw.origin,
        "limit": data_cfg.limit,
        "resize": data_cfg.resize,
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

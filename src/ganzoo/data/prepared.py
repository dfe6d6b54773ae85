"""The prepared-dataset format every stage reads: `<prepared_dir>/<source>-<size>/`.

`data.pt` holds a dict of tensors, images as uint8 NCHW (4x smaller than float; the sampler
scales them to [-1, 1] on the device), `manifest.json` describes them. Kinds and their keys:

- images:   x (N,C,H,W uint8), y (N int64, optional)
- paired:   a, b (train pairs, same N), a_test, b_test, optional y, y_test (class of each pair)
- unpaired: a, b (independent sizes), a_test, b_test, optional y_a, y_b, y_a_test, y_b_test

Both files are written atomically (temp + rename), manifest last, so a crash leaves either the
old complete dataset or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganzoo.errors import DataError
from ganzoo.files import atomic_write_text, write_temp

KIND_KEYS = {"images": ("x",), "paired": ("a", "b"), "unpaired": ("a", "b")}


@dataclass
class Prepared:
    kind: str
    tensors: dict[str, torch.Tensor]
    manifest: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        key = KIND_KEYS[self.kind][0]
        return tuple(self.tensors[key].shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        classes = self.manifest.get("classes")
        return len(classes) if classes else None


def prepared_path(data_cfg) -> Path:
    return Path(data_cfg.prepared_dir) / f"{data_cfg.source}-{data_cfg.image_size}"


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous().cpu()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def save_prepared(prep: Prepared, out_dir: Path) -> Path:
    for key in KIND_KEYS[prep.kind]:
        if key not in prep.tensors:
            raise ValueError(f"prepared {prep.kind} data lacks tensor {key!r}")
    manifest = dict(prep.manifest)
    main = prep.tensors[KIND_KEYS[prep.kind][0]]
    manifest.update(
        kind=prep.kind,
        count=int(main.shape[0]),
        shape=list(main.shape[1:]),
        counts={k: int(v.shape[0]) for k, v in prep.tensors.items()},
        pixel_format="uint8 NCHW; scaled to [-1, 1] when loaded",
        content_hash=content_hash(prep.tensors),
    )
    data, man = out_dir / "data.pt", out_dir / "manifest.json"
    tmp = write_temp(data, lambda f: torch.save(prep.tensors, f))
    try:
        # Drop the old manifest before the new data replaces the old: a crash in between then
        # leaves no dataset (load_prepared says so), never an old manifest over new data.
        man.unlink(missing_ok=True)
        os.replace(tmp, data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_text(man, json.dumps(manifest, indent=2) + "\n")
    prep.manifest = manifest
    return out_dir


def load_prepared(path: Path) -> Prepared:
    path = Path(path)
    man, data = path / "manifest.json", path / "data.pt"
    if not man.exists() or not data.exists():
        raise DataError(f"no prepared data at {path}/; run `ganzoo prepare` (same --params/--set) first")
    manifest = json.loads(man.read_text())
    tensors = torch.load(data, weights_only=True, map_location="cpu")
    return Prepared(kind=manifest["kind"], tensors=tensors, manifest=manifest)

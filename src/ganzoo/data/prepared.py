"""The prepared-dataset format every stage reads: `<prepared_dir>/<source>-<size>/`.

One `<key>.npy` per array (see `ganzoo.data.store`), images as uint8 NCHW (4x smaller than float;
the samplers scale them to [-1, 1] on the device), and `manifest.json` describing them: count,
shapes, classes, source, each array's file, dtype, shape and sha256, and the content hash. Kinds
and their keys:

- images:   x (N,C,H,W uint8), y (N int64, optional), optional x_test, y_test (held out)
- paired:   a, b (train pairs, same N), a_test, b_test, optional y, y_test (class of each pair)
- unpaired: a, b (independent sizes), a_test, b_test, optional y_a, y_b, y_a_test, y_b_test

A dataset is written into a temporary folder beside its destination and swapped in whole, so a
crash leaves the old complete dataset or none. Loading checks every file's header and size (a
truncated file is named at once), verifies the content hash (cached while the files are
unchanged) and memory-maps an array only when it is first used, so a dataset larger than memory
loads; the streaming sampler reads its rows from the files without mapping them at all.
A folder in the old format (one `data.pt`) is refused with a one-line message to re-run prepare.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganzoo.data import store
from ganzoo.errors import DataError
from ganzoo.files import atomic_write_text

KIND_KEYS = {"images": ("x",), "paired": ("a", "b"), "unpaired": ("a", "b")}


class ArrayTensors(Mapping[str, torch.Tensor]):
    """A stored dataset's arrays as tensors, each memory-mapped (copy-on-write) on first access."""

    def __init__(self, files: dict[str, store.ArrayFile]):
        self.files = files
        self._mapped: dict[str, torch.Tensor] = {}

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._mapped:
            self._mapped[key] = torch.from_numpy(self.files[key].memmap())
        return self._mapped[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class Prepared:
    kind: str
    tensors: Mapping[str, Any]  # torch tensors (in memory, or ArrayTensors when loaded); Rows before saving
    manifest: dict = field(default_factory=dict)
    path: Path | None = None  # the folder it was loaded from, None when built in memory

    @property
    def files(self) -> dict[str, store.ArrayFile] | None:
        """The stored arrays, for reading rows without mapping them (None when in memory)."""
        return self.tensors.files if isinstance(self.tensors, ArrayTensors) else None

    def shape(self, key: str) -> tuple[int, ...]:
        """An array's shape, without mapping or reading it."""
        files = self.files
        return files[key].shape if files is not None else tuple(self.tensors[key].shape)

    def count(self, key: str) -> int:
        return self.shape(key)[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.shape(KIND_KEYS[self.kind][0])[1:]  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        classes = self.manifest.get("classes")
        return len(classes) if classes else None


def prepared_path(data_cfg) -> Path:
    return Path(data_cfg.prepared_dir) / f"{data_cfg.source}-{data_cfg.image_size}"


# --------------------------------------------------------------------------- hashing and saving

def _reader(value) -> tuple[tuple[int, ...], np.dtype, store.Reader]:
    """(shape, dtype, read(start, stop)) of a tensor, an array, or Rows (ganzoo.data.rows)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        arr = value
        return tuple(arr.shape), arr.dtype, lambda start, stop: arr[start:stop]
    return tuple(value.shape), np.dtype(value.dtype), value.read


def content_hash(tensors: Mapping[str, Any]) -> str:
    """The hash `save_prepared` puts in the manifest, computed from arrays in memory (in chunks)."""
    digests = {}
    for key in tensors:
        shape, dtype, read = _reader(tensors[key])
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        step = max(1, store.READ_BYTES // max(1, row))
        h = hashlib.sha256()
        for start in range(0, shape[0], step):
            rows = np.ascontiguousarray(read(start, min(start + step, shape[0])), dtype=dtype)
            h.update(rows.reshape(-1).view(np.uint8).data)
        digests[key] = (shape, h.hexdigest())
    return store.combine(digests)


def in_memory(prep: Prepared) -> Prepared:
    """prep with every array read into a tensor (Rows decoded, maps copied): small data, tests."""
    tensors = {}
    for key in prep.tensors:
        shape, _, read = _reader(prep.tensors[key])
        tensors[key] = torch.from_numpy(np.array(read(0, shape[0])))
    return Prepared(prep.kind, tensors, dict(prep.manifest))


def _chmod_dir(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)  # mkdtemp makes 0700 folders; outputs get the usual mode


def save_prepared(prep: Prepared, out_dir: Path, chunk_bytes: int | None = None) -> Path:
    """Write prep's arrays (tensors, arrays or Rows, read in chunks) and manifest to out_dir."""
    for key in KIND_KEYS[prep.kind]:
        if key not in prep.tensors:
            raise ValueError(f"prepared {prep.kind} data lacks tensor {key!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.t*-*"):  # left by a killed prepare
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    old = out_dir.parent / f".{out_dir.name}.trash-{os.getpid()}"
    try:
        _chmod_dir(tmp)
        readers = {k: _reader(v) for k, v in prep.tensors.items()}
        entries = store.write_arrays(tmp, readers, chunk_bytes)
        manifest = dict(prep.manifest)
        main = entries[KIND_KEYS[prep.kind][0]]["shape"]
        manifest.update(
            kind=prep.kind,
            count=main[0],
            shape=main[1:],
            counts={k: e["shape"][0] for k, e in entries.items()},
            pixel_format="uint8 NCHW; scaled to [-1, 1] when loaded",
            format=store.FORMAT,
            arrays=entries,
            content_hash=store.combine({k: (tuple(e["shape"]), e["sha256"]) for k, e in entries.items()}),
        )
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            os.replace(out_dir, old)  # a crash between the two renames leaves no dataset, never a mixed one
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    store.remember(out_dir, entries, manifest["content_hash"])
    prep.manifest = manifest
    return out_dir


# --------------------------------------------------------------------------- loading

def _read_manifest(path: Path) -> dict:
    man = path / "manifest.json"
    if not man.exists():
        if (path / "data.pt").exists():
            raise DataError(f"{path}/ holds the old prepared format (data.pt, no manifest); {store.RERUN}")
        raise DataError(f"no prepared data at {path}/; run `ganzoo prepare` (same --params/--set) first")
    try:
        manifest = json.loads(man.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{man} is unreadable ({type(exc).__name__}); {store.RERUN}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != store.FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        what = (f"an unknown prepared format {found!r}" if found
                else "the old prepared format (one data.pt)")
        raise DataError(f"{path}/ holds {what}; this ganzoo reads {store.FORMAT} (.npy arrays); {store.RERUN}")
    return manifest


def load_prepared(path: Path, verify: bool = True) -> Prepared:
    """The dataset in `path`: headers and sizes checked, content hash verified (see the module
    docstring), arrays mapped lazily."""
    path = Path(path)
    manifest = _read_manifest(path)
    entries = manifest["arrays"]
    files = {key: store.ArrayFile(path / e["file"]) for key, e in entries.items()}
    for key, f in files.items():
        want = (tuple(entries[key]["shape"]), np.dtype(entries[key]["dtype"]))
        if (f.shape, f.dtype) != want:
            raise DataError(f"prepared array {f.path} holds {f.dtype} {f.shape}, but manifest.json lists "
                            f"{want[1]} {want[0]}; {store.RERUN}")
    if verify:
        store.verify(path, entries, files, manifest["content_hash"])
    return Prepared(kind=manifest["kind"], tensors=ArrayTensors(files), manifest=manifest, path=path)

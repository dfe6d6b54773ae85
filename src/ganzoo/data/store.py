"""The prepared dataset on disk: one NumPy `.npy` file per array (uint8 NCHW images, int64
labels) beside `manifest.json`, written in chunks and read without ever holding a whole array.

Why `.npy`: any tool reads it without ganzoo (`np.load("x.npy", mmap_mode="r")`), it memory-maps,
and its rows sit at fixed offsets, so a batch is a few positioned reads. Training streams rows with
`os.preadv` rather than through a mapping: a map of the whole file would count against the
process's address space (`ulimit -v`) and every page it touched would count in its RSS, while
page-cache reads count in neither.

Writing: `write_arrays` fills every array in lockstep, chunk by chunk (one chunk of rows per array
in memory, so two arrays decoded from the same files, like the halves of side-by-side pairs, are
decoded once), and hashes each array's bytes as they are written. The content hash is over the
arrays' names, shapes and digests (`combine`), so a chunked write and a one-piece write of the
same data hash alike.

Verifying: `verify` re-hashes the files in chunks and compares with the manifest; a file whose
(size, mtime, ctime, inode) was verified before is trusted, the stamp cached in memory and in
`$GANZOO_CACHE_DIR` (default `~/.cache/ganzoo`), so a stage re-reads a dataset only after it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ganzoo.errors import DataError

FORMAT = "npy-1"  # the manifest's `format`; folders without it are the old single data.pt format
CHUNK_BYTES = 32 << 20  # rows per write chunk: about this many bytes of the widest array
READ_BYTES = 8 << 20  # hashing reads this much at a time
RERUN = "re-run `ganzoo prepare` (same --params/--set) to rewrite it"


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The .npy v1.0 header of a C-ordered array (what np.save writes)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def array_digest(key: str, shape: tuple[int, ...], digest: str) -> bytes:
    return f"{key}|{tuple(int(s) for s in shape)}|{digest}\n".encode()


def combine(digests: Mapping[str, tuple[tuple[int, ...], str]]) -> str:
    """The dataset's content hash from each array's (shape, sha256 of its bytes), in name order."""
    h = hashlib.sha256()
    for key in sorted(digests):
        shape, digest = digests[key]
        h.update(array_digest(key, shape, digest))
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- reading

class ArrayFile:
    """One stored array: its header parsed and its size checked, rows read by position."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except FileNotFoundError:
            raise DataError(f"prepared array {self.path} is missing; {RERUN}") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"prepared array {self.path} is not a readable .npy file "
                            f"({type(exc).__name__}); {RERUN}") from None
        if fortran:
            raise DataError(f"prepared array {self.path} is Fortran-ordered, not as ganzoo writes it; {RERUN}")
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.nbytes = self.shape[0] * self.row_bytes if self.shape else self.dtype.itemsize
        size = self.path.stat().st_size
        if size < self.offset + self.nbytes:
            raise DataError(f"prepared array {self.path} is truncated ({size:,} of {self.offset + self.nbytes:,} "
                            f"bytes); {RERUN}")

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as a new array (positioned reads: no map, no page counted in RSS)."""
        out = np.empty((stop - start, *self.row_shape), self.dtype)
        with open(self.path, "rb", buffering=0) as f:
            self._fill(f.fileno(), out.reshape(-1).view(np.uint8).data, self.offset + start * self.row_bytes)
        return out

    def _fill(self, fd: int, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                raise DataError(f"prepared array {self.path} ended early (at byte {offset + done:,}); {RERUN}")
            done += n

    def gather(self, fd: int, rows: np.ndarray, out: np.ndarray) -> None:
        """out[j] = row rows[j], one positioned read per row, from an open descriptor."""
        flat, row = out.reshape(-1).view(np.uint8).data, self.row_bytes
        for j, i in enumerate(rows.tolist()):
            self._fill(fd, flat[j * row:(j + 1) * row], self.offset + i * row)

    def memmap(self) -> np.ndarray:
        """The whole array, memory-mapped copy-on-write (writes stay private, never reach the file)."""
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        return np.memmap(self.path, self.dtype, mode="c", offset=self.offset, shape=self.shape)

    def sha256(self) -> str:
        h = hashlib.sha256()
        step = max(1, READ_BYTES // max(1, self.row_bytes))
        for start in range(0, len(self), step):
            h.update(self.read(start, min(start + step, len(self))).reshape(-1).view(np.uint8).data)
        return h.hexdigest()


# --------------------------------------------------------------------------- writing

Reader = Callable[[int, int], np.ndarray]  # (start, stop) -> rows start..stop-1


def write_arrays(folder: Path, arrays: Mapping[str, tuple[tuple[int, ...], np.dtype, Reader]],
                 chunk_bytes: int | None = None) -> dict[str, dict]:
    """Write each array to `folder/<key>.npy` in lockstep chunks; return {key: manifest entry}."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    files, hashes, entries = {}, {}, {}
    try:
        for key, (shape, dtype, _) in arrays.items():
            name = f"{key}.npy"
            files[key] = open(folder / name, "wb")  # closed in the finally below
            files[key].write(npy_header(np.dtype(dtype), shape))
            hashes[key] = hashlib.sha256()
            entries[key] = {"file": name, "dtype": np.dtype(dtype).str, "shape": list(shape)}
        widest = max((int(np.prod(s[1:], dtype=np.int64)) * np.dtype(d).itemsize for s, d, _ in arrays.values()),
                     default=1)
        step = max(1, chunk_bytes // max(1, widest))
        longest = max((s[0] for s, _, _ in arrays.values()), default=0)
        for start in range(0, longest, step):
            for key, (shape, dtype, read) in arrays.items():
                if start >= shape[0]:
                    continue
                stop = min(start + step, shape[0])
                rows = np.ascontiguousarray(read(start, stop), dtype=dtype)
                if rows.shape != (stop - start, *shape[1:]):
                    raise ValueError(f"array {key!r}: rows {start}:{stop} came back with shape {rows.shape}")
                data = rows.reshape(-1).view(np.uint8).data
                files[key].write(data)
                hashes[key].update(data)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()
    for key, entry in entries.items():
        entry["sha256"] = hashes[key].hexdigest()
    return entries


# --------------------------------------------------------------------------- verifying

_VERIFIED: dict[str, dict] = {}  # this process's verified stamps, by folder


def cache_dir() -> Path:
    env = os.environ.get("GANZOO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ganzoo"


def _stamp(folder: Path, entries: Mapping[str, dict]) -> dict:
    out = {}
    for name in ["manifest.json", *sorted(e["file"] for e in entries.values())]:
        st = (folder / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return out


def _cache_file(folder: Path) -> Path:
    return cache_dir() / "verified" / (hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24] + ".json")


def remember(folder: Path, entries: Mapping[str, dict], content_hash: str) -> None:
    """Record that `folder`'s files, as they are now, hash to content_hash (memory + disk cache)."""
    key = str(folder.resolve())
    record = {"folder": key, "hash": content_hash, "stamp": _stamp(folder, entries)}
    _VERIFIED[key] = record
    path = _cache_file(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:  # a read-only home only costs a re-hash next time
        pass


def _known(folder: Path, entries: Mapping[str, dict], content_hash: str) -> bool:
    key = str(folder.resolve())
    stamp = _stamp(folder, entries)
    record = _VERIFIED.get(key)
    if record is None:
        try:
            record = json.loads(_cache_file(folder).read_text())
        except (OSError, ValueError):
            return False
    return record.get("folder") == key and record.get("hash") == content_hash and record.get("stamp") == stamp


def verify(folder: Path, entries: Mapping[str, dict], files: Mapping[str, ArrayFile], content_hash: str) -> None:
    """DataError unless the arrays hash to the manifest's content hash (skipped when unchanged
    since the last verification)."""
    if _known(folder, entries, content_hash):
        return
    digests = {}
    for key, entry in entries.items():
        digest = files[key].sha256()
        if entry.get("sha256") and digest != entry["sha256"]:
            raise DataError(f"prepared array {files[key].path} does not match its manifest hash (it changed "
                            f"after `ganzoo prepare`); {RERUN}")
        digests[key] = (files[key].shape, digest)
    if combine(digests) != content_hash:
        raise DataError(f"prepared data in {folder}/ does not match its manifest's content hash {content_hash}; "
                        f"{RERUN}")
    remember(folder, entries, content_hash)

"""Arrays produced a chunk of rows at a time, so `prepare` never holds a whole dataset: `Rows`
objects have a `shape`, a `dtype` and `read(start, stop)`, and `save_prepared` writes them to
their `.npy` files chunk by chunk.

Image files are decoded by a small thread pool (PIL releases the GIL while decoding and
resizing), in file order, so the result does not depend on the pool. Images far smaller than the
target are counted (`SizeReport`) and reported once per prepare.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganzoo.data.images import convert, decode_file, load_image
from ganzoo.errors import DataError

DECODE_THREADS = min(8, os.cpu_count() or 1)


@dataclass
class SizeReport:
    """Images under 1/8 of the target on their shorter side (a 1x1 thumbnail, a broken export):
    upscaled that far they carry nothing. Counted while decoding, reported once."""

    size: int
    seen: int = 0
    small: int = 0
    example: tuple[str, int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # decoder threads add

    @property
    def threshold(self) -> int:
        return max(2, self.size // 8)

    def add(self, name: str, w: int, h: int) -> None:
        with self.lock:
            self.seen += 1
            if min(w, h) < self.threshold:
                self.small += 1
                if self.example is None or (min(w, h), name) < (min(self.example[1:]), self.example[0]):
                    self.example = (name, w, h)

    def warn(self, where: str) -> None:
        if self.small and self.example:
            name, w, h = self.example
            print(f"[ganzoo] warning: {self.small:,} of {self.seen:,} images in {where} are under "
                  f"{self.threshold} px on their shorter side (smallest: {name}, {w}x{h}); they were upscaled "
                  f"to {self.size}x{self.size}: remove them or check the folder", file=sys.stderr)


class ArrayRows:
    """An in-memory uint8 NCHW tensor, converted to size/channels one chunk at a time."""

    def __init__(self, x: torch.Tensor, size: int, channels: int | None):
        self.x, self.size, self.channels = x, size, channels
        c = channels or int(x.shape[1])
        if int(x.shape[1]) not in (1, 3):
            raise DataError(f"images have {x.shape[1]} channels; only 1 or 3 are supported")
        self.shape = (int(x.shape[0]), c, size, size)
        self.dtype = np.dtype(np.uint8)

    def read(self, start: int, stop: int) -> np.ndarray:
        return convert(self.x[start:stop], self.size, self.channels).numpy()


@dataclass
class FileRows:
    """Image files decoded to (channels, size, size) uint8 by the resize policy."""

    files: Sequence[Path]
    channels: int
    size: int
    resize: str = "center_crop"
    report: SizeReport | None = None
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.uint8))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, self.size, self.size)

    def _one(self, path: Path) -> np.ndarray:
        arr, (w, h) = decode_file(path, self.channels, self.size, self.resize)
        if self.report is not None:
            self.report.add(str(path), w, h)
        return arr

    def read(self, start: int, stop: int) -> np.ndarray:
        return decode_many(self._one, self.files[start:stop], self.shape[1:])


def decode_many(fn: Callable[[Path], np.ndarray], files: Sequence, row_shape: tuple) -> np.ndarray:
    out = np.empty((len(files), *row_shape), np.uint8)
    if len(files) <= 1 or DECODE_THREADS == 1:
        for i, f in enumerate(files):
            out[i] = fn(f)
        return out
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for i, arr in enumerate(pool.map(fn, files)):  # in order: the output never depends on timing
            out[i] = arr
    return out


class PairRows:
    """Two arrays decoded together from one list of items (the halves of side-by-side pix2pix
    images, or A/B files matched by name): `a` and `b` share one decode per chunk, since
    `save_prepared` asks for both at the same rows in turn."""

    def __init__(self, items: Sequence, decode: Callable[[object], tuple[np.ndarray, np.ndarray]],
                 channels: int, size: int, report: SizeReport | None = None):
        self.items, self.decode, self.report = items, decode, report
        self.row_shape = (channels, size, size)
        self._cache: tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = None
        self.a, self.b = _Half(self, 0), _Half(self, 1)

    def rows(self, start: int, stop: int, which: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != (start, stop):
            both = decode_many(lambda item: np.stack(self.decode(item)), self.items[start:stop], (2, *self.row_shape))
            self._cache = ((start, stop), (both[:, 0], both[:, 1]))
        return self._cache[1][which]


class _Half:
    def __init__(self, pair: PairRows, which: int):
        self.pair, self.which = pair, which
        self.shape = (len(pair.items), *pair.row_shape)
        self.dtype = np.dtype(np.uint8)
        self.report = pair.report

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.pair.rows(start, stop, self.which)


def side_by_side(channels: int, size: int, resize: str, report: SizeReport | None):
    """Decoder of one A|B image file into its two halves (pix2pix's layout)."""
    from ganzoo.data.images import image_array

    def decode(p) -> tuple[np.ndarray, np.ndarray]:
        im = load_image(p, channels)
        w, h = im.size
        if w % 2:
            raise DataError(f"{p} is {w} pixels wide, odd, so it cannot hold A and B side by side; "
                            "crop it to an even width or use the A/ B/ layout")
        if report is not None:
            report.add(str(p), w // 2, h)
        return (image_array(im.crop((0, 0, w // 2, h)), size, resize),
                image_array(im.crop((w // 2, 0, w, h)), size, resize))
    return decode


def matched_pair(channels: int, size: int, resize: str, report: SizeReport | None):
    """Decoder of an (A file, B file) pair, which must be the same size."""
    from ganzoo.data.images import image_array

    def decode(pair) -> tuple[np.ndarray, np.ndarray]:
        pa, pb = pair
        ia, ib = load_image(pa, channels), load_image(pb, channels)
        if ia.size != ib.size:
            raise DataError(f"{pa} is {ia.size[0]}x{ia.size[1]} but its pair {pb} is {ib.size[0]}x{ib.size[1]}; "
                            "paired images must have the same size")
        if report is not None:
            report.add(str(pa), *ia.size)
        return image_array(ia, size, resize), image_array(ib, size, resize)
    return decode

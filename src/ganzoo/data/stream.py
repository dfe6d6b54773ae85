"""Batches for datasets too large to keep on the training device (or, on the CPU, in memory as
float): the same interface and, on the CPU, the very same draws as `DeviceBatches`
(`draw_batch`), with the images left where they are stored.

A stored dataset (`load_prepared`) is read row by row from its `.npy` files with positioned
reads, by one background thread, `prefetch` batches ahead, straight into pinned memory on CUDA:
host memory holds only the batches in flight, the process maps nothing (its RSS and address space
do not grow with the dataset) and the page cache keeps what is hot. An in-memory dataset is
gathered from host memory instead. Each batch travels to the device as uint8 (a quarter of the
float bytes) on a side stream and is scaled, and jittered when `data.jitter` is on, there.

Indices and jitter come from a CPU generator seeded like DeviceBatches'; the reader thread only
reads, so the batches do not depend on its timing. `state_dict` is the generator's state before
the first batch not yet handed out, so prefetched batches are drawn again after a resume and the
run continues exactly. No DataLoader worker processes, no per-step host sync.
"""

from __future__ import annotations

import os
import resource
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ganzoo.data import jitter as jit
from ganzoo.data.images import to_unit_range
from ganzoo.data.prepared import Prepared
from ganzoo.data.sampler import draw_batch, image_size
from ganzoo.data.store import ArrayFile


class _FileRows:
    """One stored image array (this rank's shard of it), read by positioned reads."""

    def __init__(self, f: ArrayFile, rank: int, world: int):
        self.file, self.rank, self.world = f, rank, world
        self.count = len(range(rank, len(f), world))
        self.fd = os.open(f.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def gather(self, idx: torch.Tensor, pin: bool) -> torch.Tensor:
        out = torch.empty((len(idx), *self.file.row_shape), dtype=torch.uint8, pin_memory=pin)
        rows = idx.numpy() * self.world + self.rank
        self.file.gather(self.fd, rows, out.numpy())
        return out


class _TensorRows:
    def __init__(self, t: torch.Tensor):
        self.t, self.count = t, int(t.shape[0])

    def gather(self, idx: torch.Tensor, pin: bool) -> torch.Tensor:
        v = self.t[idx]
        return v.pin_memory() if pin else v


class StreamBatches:
    def __init__(self, prep: Prepared, batch_size: int, device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, prefetch: int = 2,
                 jitter: bool = False):
        self.kind = prep.kind
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.prefetch = prefetch
        self.jitter_size = image_size(prep) if jitter else None
        self.pin = self.device.type == "cuda"
        files = prep.files
        self.rows: dict[str, _FileRows | _TensorRows] = {}
        for key in prep.tensors:  # iterating names maps nothing
            if key.endswith("_test"):
                continue
            if files is not None and len(files[key].shape) == 4:
                self.rows[key] = _FileRows(files[key], rank, world_size)
                continue
            t = prep.tensors[key] if files is None else torch.from_numpy(files[key].read(0, len(files[key])))
            self.rows[key] = _TensorRows(t[rank::world_size] if world_size > 1 else t)
        self.counts = {k: r.count for k, r in self.rows.items()}
        self._batches_per_step = 1
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)
        self.stream = torch.cuda.Stream(self.device) if self.pin else None
        reads_files = any(isinstance(r, _FileRows) for r in self.rows.values())
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="ganzoo-stream") if reads_files else None
        self.pending: deque = deque()  # (generator state before the draw, draws, future of the host batch)

    @property
    def batches_per_step(self) -> int:
        return self._batches_per_step

    @batches_per_step.setter
    def batches_per_step(self, n: int) -> None:
        self._batches_per_step = n
        self._rewind()  # queued batches have the old size

    def _host_batch(self, draws) -> dict[str, torch.Tensor]:
        host = {}
        for keys, idx, params in draws:
            for k in keys:
                if k in self.rows:
                    host[k] = self.rows[k].gather(idx, self.pin)
            if params is not None:
                host[f"jitter:{keys[0]}"] = params.pin_memory() if self.pin else params
        return host

    def _enqueue(self) -> None:
        state = self.generator.get_state()
        n = self.batch_size * self.batches_per_step
        draws = draw_batch(self.kind, self.counts, n, self.generator, "cpu", self.jitter_size)
        if self.reader is not None:
            future = self.reader.submit(self._host_batch, draws)
        else:
            future = Future()
            future.set_result(self._host_batch(draws))
        self.pending.append((state, draws, future))

    def _to_device(self, draws, host: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for keys, _, params in draws:
            p = host[f"jitter:{keys[0]}"].to(self.device, non_blocking=True) if params is not None else None
            for k in keys:
                if k not in host:
                    continue
                v = host[k].to(self.device, non_blocking=True)
                if v.dim() == 4:
                    v = to_unit_range(v)
                    v = (jit.apply(v, p) if p is not None else v).contiguous(memory_format=self.fmt)
                out[k] = v
        return out

    def next(self) -> dict[str, torch.Tensor]:
        while len(self.pending) < self.prefetch + 1:
            self._enqueue()
        _, draws, future = self.pending.popleft()
        host = future.result()
        if self.stream is None:
            return self._to_device(draws, host)
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            batch = self._to_device(draws, host)
        main.wait_stream(self.stream)
        for v in batch.values():  # allocated on the side stream, used on the main one
            v.record_stream(main)
        return batch

    def _drain(self) -> None:
        for _, _, future in self.pending:
            if not future.cancel():  # already running: let the read finish before its buffers go
                future.exception()
        self.pending.clear()

    def _rewind(self) -> None:
        if self.pending:
            state = self.pending[0][0]
            self._drain()
            self.generator.set_state(state)

    def state_dict(self) -> dict:
        state = self.pending[0][0] if self.pending else self.generator.get_state()
        return {"generator": state.clone()}

    def load_state_dict(self, state: dict) -> None:
        self._drain()
        self.generator.set_state(state["generator"].cpu())


def device_bytes(prep: Prepared) -> int:
    """Bytes DeviceBatches would keep on the device (images as float32, labels as they are),
    from the arrays' shapes alone (nothing is mapped or read)."""
    total = 0
    for key in prep.tensors:
        if key.endswith("_test"):
            continue
        files = prep.files
        if files is not None:
            shape, itemsize = files[key].shape, files[key].dtype.itemsize
            image = len(shape) == 4 and files[key].dtype == np.uint8
        else:
            t = prep.tensors[key]
            shape, itemsize, image = tuple(t.shape), t.element_size(), t.dtype == torch.uint8 and t.dim() == 4
        total += int(np.prod(shape, dtype=np.int64)) * (4 if image else itemsize)
    return total


def host_memory() -> int:
    """Memory this process may use: physical RAM, or less under `ulimit -v` / `ulimit -d`."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
    return limit


def should_stream(prep: Prepared, device: torch.device, share: float = 0.25) -> bool:
    """Stream when the float dataset would take more than `share` of the GPU's memory, or, on
    the CPU, of the memory this process may use (DeviceBatches keeps a float copy in RAM)."""
    if device.type == "cuda":
        return device_bytes(prep) > share * torch.cuda.get_device_properties(device).total_memory
    return device_bytes(prep) > share * host_memory()

"""Batches for datasets too large to keep on the training device: the same interface as
`DeviceBatches` (and on the CPU the very same draws), with the uint8 images in host memory and
each batch gathered on the host into pinned memory (torch's caching host allocator) and copied
to the device asynchronously on a side stream, `prefetch` batches ahead.

A batch's host gather and its host-to-device copy (a quarter of the float bytes: images travel
as uint8 and are scaled on the device) overlap with the GPU still computing earlier steps; no
DataLoader worker processes, no per-step host sync. Indices come from a CPU generator seeded
like DeviceBatches'; `state_dict` is the generator's state before the first batch not yet
handed out, so prefetched batches are drawn again after a resume and the run continues exactly.
"""

from __future__ import annotations

from collections import deque

import torch

from ganzoo.data.images import to_unit_range
from ganzoo.data.prepared import Prepared


class StreamBatches:
    def __init__(self, prep: Prepared, batch_size: int, device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, prefetch: int = 2):
        self.kind = prep.kind
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.prefetch = prefetch
        cuda = self.device.type == "cuda"
        self.tensors: dict[str, torch.Tensor] = {}  # pageable: only the batches get pinned
        for key, t in prep.tensors.items():
            if key.endswith("_test"):
                continue
            self.tensors[key] = t[rank::world_size] if world_size > 1 else t
        self._batches_per_step = 1
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self.pending: deque = deque()  # (generator state before the draw, batch dict, ready event)

    @property
    def batches_per_step(self) -> int:
        return self._batches_per_step

    @batches_per_step.setter
    def batches_per_step(self, n: int) -> None:
        self._batches_per_step = n
        self._rewind()  # queued batches have the old size

    def _indices(self, n: int) -> torch.Tensor:
        return torch.randint(n, (self.batch_size * self.batches_per_step,), generator=self.generator)

    def _host_batch(self) -> dict[str, torch.Tensor]:
        t = self.tensors
        if self.kind == "images":
            idx = self._indices(t["x"].shape[0])
            return {k: t[k][idx] for k in ("x", "y") if k in t}
        if self.kind == "paired":
            idx = self._indices(t["a"].shape[0])
            return {"a": t["a"][idx], "b": t["b"][idx]}
        ia, ib = self._indices(t["a"].shape[0]), self._indices(t["b"].shape[0])
        return {"a": t["a"][ia], "b": t["b"][ib]}

    def _to_device(self, host: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in host.items():
            if self.stream is not None:
                v = v.pin_memory()
            v = v.to(self.device, non_blocking=True)
            out[k] = to_unit_range(v).contiguous(memory_format=self.fmt) if v.dim() == 4 else v
        return out

    def _enqueue(self) -> None:
        state = self.generator.get_state()
        host = self._host_batch()
        if self.stream is None:
            self.pending.append((state, self._to_device(host), None))
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            batch = self._to_device(host)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        self.pending.append((state, batch, ready))

    def next(self) -> dict[str, torch.Tensor]:
        while len(self.pending) < self.prefetch + 1:
            self._enqueue()
        _, batch, ready = self.pending.popleft()
        if ready is not None:
            torch.cuda.current_stream(self.device).wait_event(ready)
            for v in batch.values():  # allocated on the side stream, used on the main one
                v.record_stream(torch.cuda.current_stream(self.device))
        return batch

    def _rewind(self) -> None:
        if self.pending:
            self.generator.set_state(self.pending[0][0])
            self.pending.clear()

    def state_dict(self) -> dict:
        state = self.pending[0][0] if self.pending else self.generator.get_state()
        return {"generator": state.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.pending.clear()
        self.generator.set_state(state["generator"].cpu())


def device_bytes(prep: Prepared) -> int:
    """Bytes DeviceBatches would keep on the device (images as float32, labels as they are)."""
    total = 0
    for key, t in prep.tensors.items():
        if not key.endswith("_test"):
            total += t.numel() * (4 if t.dtype == torch.uint8 and t.dim() == 4 else t.element_size())
    return total


def should_stream(prep: Prepared, device: torch.device, share: float = 0.25) -> bool:
    """Stream when the dataset would take more than `share` of the GPU's memory; on the CPU the
    data is in host memory either way, so DeviceBatches is used."""
    if device.type != "cuda":
        return False
    return device_bytes(prep) > share * torch.cuda.get_device_properties(device).total_memory

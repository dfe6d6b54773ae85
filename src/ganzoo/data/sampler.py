"""On-device batch sampling: the whole (small) prepared dataset lives on the training device
and a batch is one index gather, so no DataLoader round trip and no host sync per step.

Indices come from a dedicated generator whose state goes into the checkpoint, so a resumed run
draws exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import torch

from ganzoo.data.images import to_unit_range
from ganzoo.data.prepared import KIND_KEYS, Prepared


class DeviceBatches:
    def __init__(self, prep: Prepared, batch_size: int, device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False):
        self.kind = prep.kind
        self.batch_size = batch_size
        self.device = torch.device(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.tensors: dict[str, torch.Tensor] = {}
        for key, t in prep.tensors.items():
            if key.endswith("_test"):  # test splits are for evaluation only
                continue
            if t.dtype == torch.uint8 and t.dim() == 4:
                # Each DDP rank keeps its own shard: disjoint data, same code path.
                t = t[rank::world_size] if world_size > 1 else t
                t = to_unit_range(t.to(self.device)).contiguous(memory_format=fmt)
            else:
                t = t[rank::world_size] if world_size > 1 else t
                t = t.to(self.device)
            self.tensors[key] = t
        self.batches_per_step = 1  # set by the loop from the variant (n_critic batches per step)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed * 1000 + rank)

    def _draw(self, n: int) -> torch.Tensor:
        return torch.randint(n, (self.batch_size * self.batches_per_step,), generator=self.generator,
                             device=self.device)

    def next(self) -> dict[str, torch.Tensor]:
        t = self.tensors
        if self.kind == "images":
            idx = self._draw(t["x"].shape[0])
            batch = {"x": t["x"][idx]}
            if "y" in t:
                batch["y"] = t["y"][idx]
            return batch
        if self.kind == "paired":
            idx = self._draw(t["a"].shape[0])
            return {"a": t["a"][idx], "b": t["b"][idx]}
        ia, ib = self._draw(t["a"].shape[0]), self._draw(t["b"].shape[0])  # unpaired: independent
        return {"a": t["a"][ia], "b": t["b"][ib]}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu() if state["generator"].is_cuda else state["generator"])


__all__ = ["DeviceBatches", "KIND_KEYS"]

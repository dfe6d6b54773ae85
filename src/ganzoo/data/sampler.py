"""On-device batch sampling: the whole (small) prepared dataset lives on the training device and
a batch is one index gather (plus the papers' crop-and-flip jitter when `data.jitter` is on),
so no DataLoader round trip and no host sync per step.

Indices (and jitter draws) come from a dedicated generator whose state goes into the checkpoint,
so a resumed run draws exactly the batches the uninterrupted one would have. `draw_batch` is the
one definition of a batch's draws, shared with `StreamBatches`, so both samplers draw the same
batches from the same seed on the CPU.
"""

from __future__ import annotations

import torch

from ganzoo.data import jitter as jit
from ganzoo.data.images import to_unit_range
from ganzoo.data.prepared import KIND_KEYS, Prepared

# Which arrays a draw of indices gathers: paired data shares one draw (the pairing), unpaired
# data draws each domain independently (CycleGAN samples B independently of A).
GROUPS = {"images": (("x", "y"),), "paired": (("a", "b"),), "unpaired": (("a",), ("b",))}


def draw_batch(kind: str, counts: dict[str, int], n: int, generator: torch.Generator,
               device: torch.device | str, jitter_size: int | None) -> list[tuple[tuple[str, ...], torch.Tensor,
                                                                              torch.Tensor | None]]:
    """[(keys, indices, jitter params or None)] per group of GROUPS[kind], drawn in this order:
    the group's indices, then its jitter."""
    out = []
    for keys in GROUPS[kind]:
        idx = torch.randint(counts[keys[0]], (n,), generator=generator, device=device)
        params = jit.draw(n, jitter_size, generator, device) if jitter_size else None
        out.append((keys, idx, params))
    return out


def image_size(prep: Prepared) -> int:
    return int(prep.image_shape[-1])


class DeviceBatches:
    def __init__(self, prep: Prepared, batch_size: int, device: torch.device, seed: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, jitter: bool = False):
        self.kind = prep.kind
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.jitter_size = image_size(prep) if jitter else None
        self.tensors: dict[str, torch.Tensor] = {}
        for key, t in prep.tensors.items():
            if key.endswith("_test"):  # test splits are for evaluation only
                continue
            t = t[rank::world_size] if world_size > 1 else t  # each DDP rank keeps its own shard
            if t.dtype == torch.uint8 and t.dim() == 4:
                t = to_unit_range(t.to(self.device)).contiguous(memory_format=self.fmt)
            else:
                t = t.to(self.device)
            self.tensors[key] = t
        self.batches_per_step = 1  # set by the loop from the variant (n_critic batches per step)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed * 1000 + rank)

    def next(self) -> dict[str, torch.Tensor]:
        t = self.tensors
        counts = {k: v.shape[0] for k, v in t.items()}
        n = self.batch_size * self.batches_per_step
        batch = {}
        for keys, idx, params in draw_batch(self.kind, counts, n, self.generator, self.device, self.jitter_size):
            for k in keys:
                if k in t:
                    v = t[k][idx]
                    if params is not None and v.dim() == 4:
                        v = jit.apply(v, params).contiguous(memory_format=self.fmt)
                    batch[k] = v
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu() if state["generator"].is_cuda else state["generator"])


__all__ = ["DeviceBatches", "KIND_KEYS", "draw_batch"]

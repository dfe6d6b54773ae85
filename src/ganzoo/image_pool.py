"""The history of generated images CycleGAN's discriminators learn from (Zhu et al. 2017, sec. 4,
after Shrivastava et al. 2017): D sees a mix of current and older fakes, which damps oscillation.

Same rule as the paper's code, image by image: while the pool holds fewer than `size` images,
store the new image and return it; afterwards, with probability 1/2 return a random stored image
and put the new one in its place, else return the new image. All randomness comes from the pool's
own CPU generator and its state is part of `state_dict()`, so a resumed run draws the same swaps.
The decisions are made on the CPU, then applied with a few gathers and one scatter on the device.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0):
        self.size = size
        self.count = 0  # images stored so far (<= size)
        self.images: torch.Tensor | None = None  # (size, C, H, W) float32, allocated on first use
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Detached `images` in, the batch D should see out (same shape, float32)."""
        images = images.detach().float()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = torch.zeros(self.size, *images.shape[1:], device=images.device)
        n = images.shape[0]
        fill = min(n, self.size - self.count)
        slot = [-1] * n  # pool slot each image goes to (-1: returned, not stored)
        take = [-1] * n  # pool slot whose old image is returned instead (-1: return the image itself)
        for i in range(fill):
            slot[i] = self.count + i
        self.count += fill
        rest = n - fill
        if rest:
            swap = torch.rand(rest, generator=self.generator) > 0.5
            where = torch.randint(self.size, (rest,), generator=self.generator)
            for j in torch.nonzero(swap).flatten().tolist():
                slot[fill + j] = take[fill + j] = int(where[j])
        out = images.clone()
        last_writer: dict[int, int] = {}  # slot -> batch index that stored into it most recently
        from_pool, from_batch = [], []  # (output index, pool slot) and (output index, batch index)
        for i in range(n):
            if take[i] >= 0:  # gets what the slot holds now: an earlier image of this batch, or the pool's
                if take[i] in last_writer:
                    from_batch.append((i, last_writer[take[i]]))
                else:
                    from_pool.append((i, take[i]))
            if slot[i] >= 0:
                last_writer[slot[i]] = i
        dev = images.device
        if from_pool:
            dst, src = _index(from_pool, dev)
            out[dst] = self.images[src]
        if from_batch:
            dst, src = _index(from_batch, dev)
            out[dst] = images[src]
        if last_writer:  # store after reading, each slot's final writer only
            dst, src = _index(list(last_writer.items()), dev)
            self.images[dst] = images[src]
        return out

    def state_dict(self) -> dict:
        images = self.images[:self.count].cpu() if self.images is not None else torch.zeros(0)
        return {"images": images, "count": self.count, "size": self.size, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size, self.count = int(state["size"]), int(state["count"])
        stored = state["images"]
        if self.count:
            self.images = torch.zeros(self.size, *stored.shape[1:], device=device)
            self.images[:self.count] = stored.to(device)
        else:
            self.images = None
        self.generator.set_state(state["generator"])


def _index(pairs: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[(i, j), ...] -> index tensors (i...), (j...) on `device`. On CUDA they travel from pinned
    memory without blocking, so a training step keeps the host running ahead of the GPU."""
    t = torch.tensor(pairs, dtype=torch.long).t().contiguous()
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    return t[0], t[1]

"""The history of generated images CycleGAN's discriminators learn from (Zhu et al. 2017, sec. 4,
after Shrivastava et al. 2017): D sees a mix of current and older fakes, which damps oscillation.

Same rule as the paper's code, image by image: while the pool holds fewer than `size` images,
store the new image and return it; afterwards, with probability 1/2 return a random stored image
and put the new one in its place, else return the new image. Images of one batch are handled in
order, so a later image may get back an earlier one of the same batch.

All of it runs on the images' device with no host round trip: the coin flips and slots come from
the pool's own generator (on the CPU, the same draws as before this ran on the device; on CUDA a
generator on the GPU, seeded from the CPU one), and the in-order rule is resolved with an n x n
comparison instead of a Python loop. A training step therefore never waits for the GPU here,
nor copies index tensors to it. The generator's state is part of `state_dict()`, so a resumed
run draws the same swaps.

On CUDA the pool can also be replayed from a captured CUDA graph: the fill count lives in a device
tensor (the host keeps no per-step state a replay would leave stale), and a coin and a slot are
drawn for every image of every batch, used only once the pool is full (a graph cannot draw a
number of values that depends on the fill). The generator must then be registered with the graph
(CycleGAN's `cuda_generators`). On the CPU the count stays a Python int and only the images past
the fill draw, as before; `device_count=True` selects the CUDA form anywhere (tests).
"""

from __future__ import annotations

import hashlib

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0, device_count: bool | None = None):
        self.size = size
        self._filled: int | torch.Tensor = 0  # images stored so far (<= size); a tensor in the device form
        self.device_count = device_count  # None: the device form on CUDA, the host form elsewhere
        # (size + 1, C, H, W) float32, allocated on first use; row `size` takes the writes a later
        # image of the same batch overrides, so the stores are one index_copy_ without a mask.
        self._store: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def count(self) -> int:
        """Images stored so far (reads the device in the device form)."""
        return int(self._filled)

    @property
    def images(self) -> torch.Tensor | None:
        """The pool's slots, (size, C, H, W); the first `count` hold images."""
        return None if self._store is None else self._store[:self.size]

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator.device.type != device.type:  # hand over to the device, deterministically
            # device=: a CUDA run's generator, resumed with train.device=cpu where CUDA exists
            seed = int(torch.randint(2 ** 62, (1,), generator=self.generator, device=self.generator.device))
            self.generator = torch.Generator(device=device).manual_seed(seed)
        return self.generator

    def _plan_on_host(self, n: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(slot each image is stored in, slot whose image is returned instead), -1 for none."""
        filled = int(self._filled)
        fill = min(n, self.size - filled)
        slot = torch.full((n,), -1, dtype=torch.long, device=dev)
        take = torch.full((n,), -1, dtype=torch.long, device=dev)
        slot[:fill] = torch.arange(filled, filled + fill, device=dev)
        self._filled = filled + fill
        rest = n - fill
        if rest:
            g = self._generator(dev)
            swap = torch.rand(rest, generator=g, device=dev) > 0.5
            where = torch.randint(self.size, (rest,), generator=g, device=dev)
            picked = torch.where(swap, where, -1)
            slot[fill:] = picked
            take[fill:] = picked
        return slot, take

    def _plan_on_device(self, n: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The same plan from a device-side count, with a fixed number of draws per call."""
        if not isinstance(self._filled, torch.Tensor) or self._filled.device != dev:
            self._filled = torch.tensor(int(self._filled), dtype=torch.long, device=dev)  # once, eagerly
        g = self._generator(dev)
        swap = torch.rand(n, generator=g, device=dev) > 0.5
        where = torch.randint(self.size, (n,), generator=g, device=dev)
        position = self._filled + torch.arange(n, device=dev)
        filling = position < self.size
        picked = torch.where(swap, where, -1)
        slot = torch.where(filling, position, picked)
        take = torch.where(filling, -1, picked)
        self._filled.add_(n).clamp_(max=self.size)  # in place: a captured graph keeps this tensor
        return slot, take

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Detached `images` in, the batch D should see out (same shape, float32)."""
        images = images.detach().float()
        if self.size == 0:
            return images
        n, dev = images.shape[0], images.device
        if self._store is None:
            self._store = torch.zeros(self.size + 1, *images.shape[1:], device=dev)
        on_device = dev.type == "cuda" if self.device_count is None else self.device_count
        slot, take = self._plan_on_device(n, dev) if on_device else self._plan_on_host(n, dev)
        order = torch.arange(n, device=dev)
        earlier = order[None, :] < order[:, None]  # [i, j]: j comes before i
        # The image i gets back is what its slot holds now: the latest earlier image of this batch
        # stored there, else the pool's.
        wrote = (slot[None, :] == take[:, None]) & earlier & (take[:, None] >= 0)
        last = torch.where(wrote, order[None, :], -1).amax(1)
        from_pool = ((take >= 0) & (last < 0)).view(-1, 1, 1, 1)
        from_batch = (last >= 0).view(-1, 1, 1, 1)
        out = torch.where(from_pool, self._store[take.clamp(min=0)], images)
        out = torch.where(from_batch, images[last.clamp(min=0)], out)
        # Store after reading, each slot's final writer only (the rest go to the spare row).
        overridden = ((slot[None, :] == slot[:, None]) & earlier.t()).any(1)
        target = torch.where((slot >= 0) & ~overridden, slot, self.size)
        self._store.index_copy_(0, target, images)
        return out

    def state_dict(self) -> dict:
        images = self._store[:self.count].cpu() if self._store is not None else torch.zeros(0)
        return {"images": images, "count": self.count, "size": self.size, "generator": self.generator.get_state(),
                "generator_device": self.generator.device.type}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size, count = int(state["size"]), int(state["count"])
        self._filled = count  # the device form moves it to the device at its next query
        stored = state["images"]
        if count:
            self._store = torch.zeros(self.size + 1, *stored.shape[1:], device=device)
            self._store[:count] = stored.to(device)
        else:
            self._store = None
        saved = state.get("generator_device", "cpu")  # checkpoints before the device pool: cpu
        gen_state = state["generator"].cpu()
        if saved == "cpu" or torch.cuda.is_available():
            self.generator = torch.Generator(device="cpu" if saved == "cpu" else saved)
            self.generator.set_state(gen_state)
        else:  # a GPU run resumed without a GPU: a seed derived from the saved state
            seed = int.from_bytes(hashlib.sha256(gen_state.numpy().tobytes()).digest()[:7], "little")
            self.generator = torch.Generator().manual_seed(seed)

"""The pix2pix / CycleGAN training jitter: resize to 286 x 286, take a random 256 x 256 crop, flip
it horizontally with probability 1/2 (pix2pix, Isola et al. 2017, appendix 6.2; CycleGAN's
reference code trains with the same `--load_size 286 --crop_size 256` and flips). At other sizes
the load size keeps the ratio: round(size * 286 / 256) (32 -> 36, 64 -> 72, 128 -> 143).

Done on the training device as part of the batch gather (`DeviceBatches`, `StreamBatches`):
a batch's crop offsets and flips are drawn from the sampler's own generator right after its
indices, so they are seeded by `seed`, saved in checkpoints and replayed exactly on resume. One
draw serves both halves of a pair (pix2pix's A and B get the same crop and flip); CycleGAN's A
and B are drawn independently, like their indices.

`data.jitter: null` resolves to on for the variants whose papers use it (pix2pix, cyclegan) at
`data.image_size` >= AUTO_MIN_SIZE, the photo sizes the recipe is for, and off below: on the
embedded 32 px digit tasks, 400 CPU steps of CycleGAN with the jitter kept the digit's class in
4.4% and 2.8% of translations (seeds 0, 1; 98.3% without), pix2pix's L1 rose from 0.037 to
0.054 (mirrored and shifted glyphs are a harder task than the one evaluated).

The upsampling is bicubic from the prepared image (which `prepare` stored at `data.image_size`):
for data whose originals are 256 px, as pix2pix's facades and CycleGAN's horse2zebra are, this is
exactly the reference pipeline's resize; larger originals lose the detail between 256 and 286 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAPER_LOAD, PAPER_CROP = 286, 256
AUTO_MIN_SIZE = 128  # data.jitter=null turns it on from this data.image_size up


def load_size(size: int) -> int:
    return int(round(size * PAPER_LOAD / PAPER_CROP))


def draw(n: int, size: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """(3, n) int64: top offsets, left offsets, flip flags for n images cropped to size."""
    span = load_size(size) - size + 1
    offsets = torch.randint(span, (2, n), generator=generator, device=device)
    flips = torch.randint(2, (1, n), generator=generator, device=device)
    return torch.cat([offsets, flips])


def apply(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """float (N, C, S, S) in [-1, 1] -> the same shape: upsampled to load_size(S), cropped at the
    drawn offsets, flipped where drawn. One gather does crop and flip (a flipped crop reads its
    columns backwards). The result is in channels_last memory order."""
    n, _, size, _ = x.shape
    big = F.interpolate(x, size=(load_size(size),) * 2, mode="bicubic", align_corners=False).clamp_(-1, 1)
    params = params.to(x.device)
    top, left, flip = params[0], params[1], params[2].bool()
    ramp = torch.arange(size, device=x.device)
    rows = top[:, None] + ramp  # (N, S)
    cols = left[:, None] + torch.where(flip[:, None], ramp.flip(0), ramp)  # (N, S)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = big[batch, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: (N, S, S, C)
    return out.permute(0, 3, 1, 2)

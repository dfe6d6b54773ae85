"""BEGAN's nets (Berthelot et al. 2017): an auto-encoder discriminator and a generator with the
same shape as its decoder. 3x3 convolutions with ELU, no batch norm, nearest-neighbour
upsampling, stride-2 convolutions for downsampling with channels growing by n per stage; every
net works at 8x8 internally and grows/shrinks by 2x up to the image size."""

from __future__ import annotations

import math

import torch
from torch import nn

BASE = 8  # the embedding is decoded from / encoded to an 8x8 map (paper)


def _n_stages(image_size: int) -> int:
    n = int(math.log2(image_size // BASE)) + 1 if image_size >= BASE else 0
    if n < 1 or BASE * 2 ** (n - 1) != image_size:
        raise ValueError(f"BEGAN nets need a power-of-two image size >= {BASE}, got {image_size}")
    return n


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.ELU(inplace=True)]


class Decoder(nn.Module):
    """h (B, h_dim) -> FC -> n x 8 x 8 -> [conv, conv, upsample] per stage -> conv -> image."""

    def __init__(self, h_dim: int, image_size: int, channels: int, n: int = 128, tanh: bool = False):
        super().__init__()
        stages = _n_stages(image_size)
        self.n = n
        self.fc = nn.Linear(h_dim, n * BASE * BASE)
        layers: list[nn.Module] = []
        for i in range(stages):
            layers += _conv(n, n) + _conv(n, n)
            if i < stages - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(n, channels, 3, 1, 1))
        if tanh:  # the generator's images live in [-1, 1]; the reconstruction is unconstrained
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(h.flatten(1)).view(h.shape[0], self.n, BASE, BASE))


class Encoder(nn.Module):
    """image -> conv -> [conv, conv, stride-2 conv (+n channels)] per stage -> FC -> h."""

    def __init__(self, image_size: int, channels: int, n: int = 128, h_dim: int = 64):
        super().__init__()
        stages = _n_stages(image_size)
        layers: list[nn.Module] = _conv(channels, n)
        width = n
        for i in range(stages):
            layers += _conv(width, width) + _conv(width, width)
            if i < stages - 1:
                layers += _conv(width, width + n, stride=2)
                width += n
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(width * BASE * BASE, h_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x))


class AutoEncoderDiscriminator(nn.Module):
    """D(x) = decoder(encoder(x)): BEGAN's discriminator outputs a reconstruction, and its
    losses are built on the per-sample reconstruction error (`reconstruction_error`)."""

    def __init__(self, image_size: int, channels: int, n: int = 128, h_dim: int = 64):
        super().__init__()
        self.encoder = Encoder(image_size, channels, n, h_dim)
        self.decoder = Decoder(h_dim, image_size, channels, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def reconstruction_error(d: nn.Module, x: torch.Tensor, eta: int = 1) -> torch.Tensor:
    """L(v) = |v - D(v)|^eta, averaged over pixels and the batch (the paper uses eta = 1)."""
    return (x.float() - d(x).float()).abs().pow(eta).mean()


def reconstruction_error_and_code(d: AutoEncoderDiscriminator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L(x) as in `reconstruction_error`, eta 1; the encoder's code Enc(x) it was rebuilt from):
    one pass for BEGAN-CS, which also constrains the code."""
    h = d.encoder(x)
    return (x.float() - d.decoder(h).float()).abs().mean(), h

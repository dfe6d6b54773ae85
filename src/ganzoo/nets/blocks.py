"""Image-synthesis building blocks: MLP (Goodfellow et al. 2014) and DCGAN (Radford et al. 2015).

Sizes are powers of two; DCGAN nets grow/shrink by strided (transposed) 4x4 convolutions between
4x4 and the image size, so one definition serves 16..256 pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions/linear layers, N(1, 0.02) for norm scales (DCGAN paper)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.BatchNorm1d)):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


def norm2d(kind: str, channels: int) -> nn.Module:
    """batch | instance | layer | none. 'layer' normalises over (C, H, W) per sample, which is what
    WGAN-GP needs: the penalty is per sample, so the critic must not mix samples (no batch norm)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use batch, instance, layer or none")


def _n_stages(image_size: int) -> int:
    n = int(math.log2(image_size)) - 2
    if n < 1 or 2 ** (n + 2) != image_size:
        raise ValueError(f"DCGAN nets need a power-of-two image size >= 8, got {image_size}")
    return n


OUTPUTS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLPGenerator(nn.Module):
    """z -> three LeakyReLU hidden layers -> image. `output` picks the last activation: tanh
    (images in [-1, 1]) or sigmoid (images in [0, 1], Goodfellow et al.'s MNIST generator); the
    variant that asks for sigmoid converts to [-1, 1] itself (`gan`)."""

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], hidden: int = 256, in_extra: int = 0,
                 output: str = "tanh"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown generator output {output!r}; use {' or '.join(OUTPUTS)}")
        self.image_shape = tuple(image_shape)
        self.output = output
        out = math.prod(image_shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim + in_extra, hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden * 2, hidden * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden * 4, out), OUTPUTS[output](),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1)).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(math.prod(image_shape), hidden * 2), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden * 2, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> 4x4 -> ... -> image, ConvTranspose + BN + ReLU, Tanh output."""

    def __init__(self, z_dim: int, image_size: int, channels: int, ngf: int = 64, norm: str = "batch"):
        super().__init__()
        n = _n_stages(image_size)
        width = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, width, 4, 1, 0, bias=norm == "none"), norm2d(norm, width), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=norm == "none"),
                       norm2d(norm, width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image -> ... -> 4x4 trunk -> one logit per sample. No norm on the first layer (paper).
    `features` exposes the trunk for heads that share it (InfoGAN's Q)."""

    def __init__(self, image_size: int, channels: int, ndf: int = 64, norm: str = "batch", out_dim: int = 1):
        super().__init__()
        n = _n_stages(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                       norm2d(norm, width * 2), nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        self.trunk = nn.Sequential(*layers)
        self.trunk_channels = width
        self.head = nn.Conv2d(width, out_dim, 4, 1, 0)
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(x)).flatten(1)
        return out.squeeze(1) if self.out_dim == 1 else out

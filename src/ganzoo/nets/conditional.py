"""Conditioned DCGAN nets: CGAN's label-conditioned G/D (Mirza & Osindero 2014, in the
convolutional form of Radford et al.) and InfoGAN's Q head on the discriminator trunk
(Chen et al. 2016). Same 4x4 strided (transposed) convolutions as nets.blocks' DCGAN nets,
so one definition serves every power-of-two size >= 8."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganzoo.nets.blocks import _n_stages, norm2d


def label_maps(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """One constant plane per class, 1 on y's plane, shaped to concatenate to `like` (B, C, H, W)."""
    maps = F.one_hot(y, num_classes).to(like.dtype)[:, :, None, None]
    return maps.expand(-1, -1, *like.shape[2:])


class ConditionalGenerator(nn.Module):
    """G(z, y): a learned label embedding concatenated to z, and y's one-hot label maps
    concatenated to every hidden feature map (the DCGAN form of CGAN, as in the reference
    conditional DCGAN), so every layer can keep conditioning on the class."""

    def __init__(self, z_dim: int, num_classes: int, image_size: int, channels: int,
                 ngf: int = 64, embed_dim: int = 50):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim)
        n = _n_stages(image_size)
        width = ngf * 2 ** (n - 1)
        self.stages = nn.ModuleList([nn.Sequential(
            nn.ConvTranspose2d(z_dim + embed_dim, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True))])
        for _ in range(n - 1):
            self.stages.append(nn.Sequential(
                nn.ConvTranspose2d(width + num_classes, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2), nn.ReLU(True)))
            width //= 2
        self.out = nn.Sequential(nn.ConvTranspose2d(width + num_classes, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y).to(z.dtype)], 1)[:, :, None, None]
        h = self.stages[0](h)
        for stage in self.stages[1:]:
            h = stage(torch.cat([h, label_maps(y, self.num_classes, h)], 1))
        return self.out(torch.cat([h, label_maps(y, self.num_classes, h)], 1))


class ConditionalDiscriminator(nn.Module):
    """D(x, y): y's one-hot label maps concatenated to x and to every hidden feature map, so
    every layer judges the image together with its claimed class. DCGAN layout otherwise: strided
    4x4 convolutions, LeakyReLU(0.2), no norm on the first layer."""

    def __init__(self, image_size: int, channels: int, num_classes: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        self.num_classes = num_classes
        n = _n_stages(image_size)
        self.stages = nn.ModuleList([nn.Sequential(
            nn.Conv2d(channels + num_classes, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))])
        width = ndf
        for _ in range(n - 1):
            self.stages.append(nn.Sequential(
                nn.Conv2d(width + num_classes, width * 2, 4, 2, 1, bias=norm == "none"),
                norm2d(norm, width * 2), nn.LeakyReLU(0.2, inplace=True)))
            width *= 2
        self.head = nn.Conv2d(width + num_classes, 1, 4, 1, 0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for stage in self.stages:
            h = stage(torch.cat([h, label_maps(y, self.num_classes, h)], 1))
        return self.head(torch.cat([h, label_maps(y, self.num_classes, h)], 1)).flatten()


class QHead(nn.Module):
    """InfoGAN's Q: from D's 4x4 trunk features to the categorical code's logits and the
    continuous codes' means (fixed unit variance), as in the paper's MNIST architecture:
    FC 128 - BN - LeakyReLU - FC."""

    def __init__(self, trunk_channels: int, n_cat: int, n_cont: int, hidden: int = 128):
        super().__init__()
        self.n_cat, self.n_cont = n_cat, n_cont
        self.net = nn.Sequential(
            nn.Conv2d(trunk_channels, hidden, 4, 1, 0, bias=False), nn.Flatten(),
            nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, n_cat + n_cont),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(features)
        return out[:, :self.n_cat], out[:, self.n_cat:]

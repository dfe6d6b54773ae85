"""Conditioned DCGAN nets: CGAN's label-conditioned G/D (Mirza & Osindero 2014, in the
convolutional form of Radford et al.) and InfoGAN's Q head on the discriminator trunk
(Chen et al. 2016), all built on nets.blocks' DCGAN nets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator


def label_maps(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """One constant plane per class, 1 on y's plane, shaped to concatenate to `like` (B, C, H, W)."""
    maps = F.one_hot(y, num_classes).to(like.dtype)[:, :, None, None]
    return maps.expand(-1, -1, *like.shape[2:])


class ConditionalGenerator(nn.Module):
    """G(z, y): a learned label embedding concatenated to z, then the DCGAN generator."""

    def __init__(self, z_dim: int, num_classes: int, image_size: int, channels: int,
                 ngf: int = 64, embed_dim: int = 10):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = DCGANGenerator(z_dim + embed_dim, image_size, channels, ngf)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.embed(y).to(z.dtype)], 1))


class ConditionalDiscriminator(nn.Module):
    """D(x, y): y's one-hot label maps concatenated to x, then the DCGAN discriminator, so the
    first layer's every filter sees the claimed class at every position."""

    def __init__(self, image_size: int, channels: int, num_classes: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        self.num_classes = num_classes
        self.net = DCGANDiscriminator(image_size, channels + num_classes, ndf, norm)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, label_maps(y, self.num_classes, x)], 1))


class QHead(nn.Module):
    """InfoGAN's Q: from D's trunk features to the categorical code's logits and the continuous
    codes' means (fixed unit variance), as in the paper's MNIST architecture: FC 128 - BN -
    LeakyReLU - FC. The trunk is a 4x4 map (DCGAN nets: the FC is a 4x4 conv) or, with
    `flat`, a feature vector (the paper's MNIST nets). `norm=False` drops the batch norm (the
    hidden layer then has a bias)."""

    def __init__(self, trunk_channels: int, n_cat: int, n_cont: int, hidden: int = 128, flat: bool = False,
                 leak: float = 0.2, norm: bool = True):
        super().__init__()
        self.n_cat, self.n_cont = n_cat, n_cont
        first = ([nn.Linear(trunk_channels, hidden, bias=not norm)] if flat else
                 [nn.Conv2d(trunk_channels, hidden, 4, 1, 0, bias=not norm), nn.Flatten()])
        self.net = nn.Sequential(
            *first, nn.BatchNorm1d(hidden) if norm else nn.Identity(), nn.LeakyReLU(leak, inplace=True),
            nn.Linear(hidden, n_cat + n_cont),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(features)
        return out[:, :self.n_cat], out[:, self.n_cat:]

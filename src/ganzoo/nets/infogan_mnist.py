"""InfoGAN's own MNIST networks (Chen et al. 2016, appendix C.1), for s x s images with s a
multiple of 4 (the paper's 28, or 32):

  G: input (z, c) -> FC 1024, BN, ReLU -> FC 128 x s/4 x s/4, BN, ReLU
     -> 4x4 upconv 64 stride 2, BN, ReLU -> 4x4 upconv to the image channels (tanh here: [-1, 1])
  D: 4x4 conv 64 stride 2, lReLU -> 4x4 conv 128 stride 2, BN, lReLU -> FC 1024, BN, lReLU
     -> FC 1 (D's logit); Q (nets.conditional.QHead, flat) takes the same 1024 features.

The fully connected layers at both ends are what set them apart from the DCGAN nets; measured on
MNIST they give better samples and somewhat purer categorical codes (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import nn

FC = 1024
LEAK = 0.1


class MNISTInfoGenerator(nn.Module):
    def __init__(self, in_dim: int, image_size: int, channels: int):
        super().__init__()
        self.q = image_size // 4
        self.fc = nn.Sequential(
            nn.Linear(in_dim, FC, bias=False), nn.BatchNorm1d(FC), nn.ReLU(True),
            nn.Linear(FC, 128 * self.q * self.q, bias=False), nn.BatchNorm1d(128 * self.q * self.q), nn.ReLU(True))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(z).view(z.shape[0], 128, self.q, self.q))


class MNISTInfoDiscriminator(nn.Module):
    """`features` (B, 1024) is the trunk that D's head and InfoGAN's Q share."""

    def __init__(self, image_size: int, channels: int):
        super().__init__()
        q = image_size // 4
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.LeakyReLU(LEAK, True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(LEAK, True),
            nn.Flatten(), nn.Linear(128 * q * q, FC, bias=False), nn.BatchNorm1d(FC), nn.LeakyReLU(LEAK, True))
        self.head = nn.Linear(FC, 1)
        self.trunk_channels = FC

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).squeeze(1)

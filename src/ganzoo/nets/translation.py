"""Image-to-image networks: the pix2pix U-Net and PatchGAN (Isola et al. 2017), the CycleGAN
ResNet generator (Zhu et al. 2017, after Johnson et al. 2016) and the DiscoGAN encoder-decoder
and discriminator (Kim et al. 2017). Power-of-two image sizes 32..256 (16 works too)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ganzoo.nets.blocks import norm2d


def _log2(image_size: int) -> int:
    n = int(math.log2(image_size))
    if 2 ** n != image_size or n < 3:
        raise ValueError(f"translation nets need a power-of-two image size >= 8, got {image_size}")
    return n


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) convolutions, N(1, 0.02) norm scales: the init all three papers' code uses."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


@contextmanager
def noisy_inference(net: nn.Module) -> Iterator[nn.Module]:
    """pix2pix's inference mode (Isola et al., section 3.3): dropout stays on and batch norm
    normalises with the statistics of the batch being translated, while its running statistics
    (and their counter) are neither used nor updated. Every module's mode is restored on exit."""
    saved: list[tuple[nn.Module, bool, bool | None]] = []
    for m in net.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            saved.append((m, m.training, None))
            m.training = True
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            # training + track_running_stats=False: F.batch_norm gets no running buffers, so it
            # uses the batch's statistics and writes nothing back.
            saved.append((m, m.training, m.track_running_stats))
            m.training, m.track_running_stats = True, False
    try:
        yield net
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                setattr(m, "track_running_stats", track)  # noqa: B010 -- nn.Module types the attribute as Tensor | Module


# --------------------------------------------------------------------------- pix2pix U-Net

class _UNetLevel(nn.Module):
    """down -> sub -> up, with the input concatenated to the output (the skip connection).
    `sub` None makes the innermost level; `out_channels` the outermost (no skip, Tanh)."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, norm: str, dropout: float = 0.0,
                 in_channels: int | None = None, out_channels: int | None = None):
        super().__init__()
        self.outermost = out_channels is not None
        bias = norm != "batch"  # a following batch norm makes the bias redundant
        up_in = inner if sub is None else inner * 2  # sub's output carries its skip too
        layers: list[nn.Module]
        if out_channels is not None:  # self.outermost
            assert in_channels is not None and sub is not None, "the outermost level takes in_channels and a sub-level"
            layers = [nn.Conv2d(in_channels, inner, 4, 2, 1, bias=bias), sub,
                      nn.ReLU(True), nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1), nn.Tanh()]
        else:
            layers = [nn.LeakyReLU(0.2, True)]
            if sub is None:  # 1x1 bottleneck: no norm over a single value per channel
                layers += [nn.Conv2d(outer, inner, 4, 2, 1)]
            else:
                layers += [nn.Conv2d(outer, inner, 4, 2, 1, bias=bias), norm2d(norm, inner), sub]
            layers += [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias), norm2d(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UNetGenerator(nn.Module):
    """Encoder of log2(size) stride-2 convs down to 1x1 (widths ngf, 2ngf, 4ngf, then 8ngf) and a
    mirrored decoder, each level concatenating its encoder features. Dropout on the three decoder
    levels next to the bottleneck: pix2pix's placement at 256 px, kept at smaller sizes so the
    generator keeps its only noise source."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, ngf: int = 64,
                 norm: str = "batch", dropout: float = 0.5):
        super().__init__()
        n = _log2(image_size)
        w = [ngf * min(2 ** i, 8) for i in range(n)]  # width after down step i
        level = _UNetLevel(w[n - 2], w[n - 1], None, norm)
        for i in range(n - 2, 0, -1):
            level = _UNetLevel(w[i - 1], w[i], level, norm, dropout if i >= n - 4 else 0.0)
        self.net = _UNetLevel(w[0], w[0], level, norm, in_channels=in_channels, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- CycleGAN ResNet

class ResnetBlock(nn.Module):
    def __init__(self, width: int, norm: str, dropout: float = 0.0):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), norm2d(norm, width), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), norm2d(norm, width)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-out: reflection
    padding, instance norm, Tanh output (CycleGAN appendix)."""

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", n_down: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), norm2d(norm, ngf),
                                   nn.ReLU(True)]
        width = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(width, width * 2, 3, 2, 1), norm2d(norm, width * 2), nn.ReLU(True)]
            width *= 2
        layers += [ResnetBlock(width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1),
                       norm2d(norm, width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- PatchGAN

def patch_layers(image_size: int, n_layers: int) -> int:
    """n_layers=3 is the 70x70 PatchGAN; small images get fewer stride-2 layers so the output
    stays a map of at least 2x2 patches (size / 2^n - 2 >= 2)."""
    return max(1, min(n_layers, _log2(image_size) - 2))


class PatchDiscriminator(nn.Module):
    """C64 (no norm) - C128 - C256 - C512 (stride 1) - 1-channel map of per-patch logits."""

    def __init__(self, in_channels: int, image_size: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        n = patch_layers(image_size, n_layers)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for i in range(1, n):
            nxt = ndf * min(2 ** i, 8)
            layers += [nn.Conv2d(width, nxt, 4, 2, 1, bias=bias), norm2d(norm, nxt), nn.LeakyReLU(0.2, True)]
            width = nxt
        nxt = ndf * min(2 ** n, 8)
        layers += [nn.Conv2d(width, nxt, 4, 1, 1, bias=bias), norm2d(norm, nxt), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.n_layers = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- DiscoGAN

def _disco_stages(image_size: int) -> int:
    """Stride-2 stages down to a 4x4 code (64 px -> 4 stages, the paper's setting)."""
    return max(1, _log2(image_size) - 2)


class DiscoGenerator(nn.Module):
    """Encoder conv4x4/2 + BN + LeakyReLU(0.2) (no norm first) to 4x4 at width <= 8*ngf, decoder
    deconv4x4/2 + BN + ReLU back, Tanh output; no skip connections (Kim et al. 2017)."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, ngf: int = 64, norm: str = "batch"):
        super().__init__()
        n = _disco_stages(image_size)
        widths = [ngf * min(2 ** i, 8) for i in range(n)]
        bias = norm != "batch"
        enc: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n):
            enc += [nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=bias), norm2d(norm, widths[i]),
                    nn.LeakyReLU(0.2, True)]
        dec: list[nn.Module] = []
        for i in range(n - 1, 0, -1):
            dec += [nn.ConvTranspose2d(widths[i], widths[i - 1], 4, 2, 1, bias=bias), norm2d(norm, widths[i - 1]),
                    nn.ReLU(True)]
        dec += [nn.ConvTranspose2d(widths[0], out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*enc, *dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DiscoDiscriminator(nn.Module):
    """conv4x4/2 stages to 4x4 (BN from the second), then a 4x4 conv to one logit per image."""

    def __init__(self, in_channels: int, image_size: int, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        n = _disco_stages(image_size)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for i in range(1, n):
            nxt = ndf * min(2 ** i, 8)
            layers += [nn.Conv2d(width, nxt, 4, 2, 1, bias=bias), norm2d(norm, nxt), nn.LeakyReLU(0.2, True)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).squeeze(1)

"""DCGAN (Radford et al. 2015): strided/transposed convolutions, batch norm, ReLU in G and
LeakyReLU(0.2) in D, Tanh output (where the plain GAN's G ends in a Sigmoid), Adam lr 2e-4 betas
(0.5, 0.999), N(0, 0.02) init, and z drawn uniformly: "a 100 dimensional uniform distribution Z"
(figure 1), Uniform(-1, 1) in the paper's own code (Newmu/dcgan_code)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from ganzoo.variants.base import BaseHParams, HParams
from ganzoo.variants.gan import GAN


class DCGANParams(HParams):
    z_dim: int = Field(100, ge=1)
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)


class DCGAN(GAN):
    """Same BCE update order as GAN; only the networks (and their init, output and prior) differ."""

    name = "dcgan"
    description = "strided convolutions, batch norm, Tanh output, BCE, Adam 2e-4 (0.5, 0.999), N(0, 0.02) init"
    HParams: ClassVar[type[BaseHParams]] = DCGANParams  # widened: subclasses bring their own params
    g_range = "signed"  # Tanh: G's images are in [-1, 1] already
    uniform_noise = True  # the paper's Uniform prior

    def build(self) -> None:
        hp = self.hp
        c, s, _ = self.data.image_shape
        self.nets = {"g": DCGANGenerator(hp.z_dim, s, c, hp.ngf), "d": DCGANDiscriminator(s, c, hp.ndf)}
        for net in self.nets.values():
            init_dcgan_weights(net)
        self.optims = {k: self.adam(v.parameters(), k) for k, v in self.nets.items()}

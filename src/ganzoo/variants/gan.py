"""GAN (Goodfellow et al. 2014): MLP generator and discriminator, BCE loss, alternating one D
step and one G step, with the non-saturating generator loss the paper recommends in practice.

G ends in a Sigmoid, as in the paper's MNIST generator (its reference code, goodfeli/adversarial
mnist.yaml): its images lie in [0, 1]. Everything outside G (D's input, `decode`, sampling,
evaluation, serving) works in [-1, 1], so `generate` converts at this variant's boundary; DCGAN
and the variants built on it replace G with a Tanh one and skip the conversion. z ~ N(0, 1): the
reference code's default noise ("gaussian"), which its MNIST run does not change.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.blocks import MLPDiscriminator, MLPGenerator
from ganzoo.variants.base import BaseHParams, HParams, Variant


class GANParams(HParams):
    z_dim: int = Field(100, ge=1)
    hidden: int = Field(256, ge=8)
    dropout: float = Field(0.3, ge=0, lt=1)


class GAN(Variant):
    name = "gan"
    description = "MLP generator (Sigmoid output) and discriminator, BCE with the non-saturating generator loss"
    HParams: ClassVar[type[BaseHParams]] = GANParams  # widened: subclasses bring their own params
    # G's output range: "unit" ([0, 1], converted by `generate`) or "signed" ([-1, 1], used as is).
    g_range: ClassVar[str] = "unit"

    def build(self) -> None:
        hp, shape = self.hp, self.data.image_shape
        self.nets = {"g": MLPGenerator(hp.z_dim, shape, hp.hidden, output="sigmoid"),
                     "d": MLPDiscriminator(shape, hp.hidden, hp.dropout)}
        self.optims = {"g": self.adam(self.nets["g"].parameters(), "g"),
                       "d": self.adam(self.nets["d"].parameters(), "d")}

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in [-1, 1], the range of the data D sees and of every stage after training."""
        x = self.nets["g"](z)
        return x * 2 - 1 if self.g_range == "unit" else x

    def train_step(self, batch):
        d = self.nets["d"]
        real = batch["x"]
        fake = self.generate(self.noise(real.shape[0], self.hp.z_dim))
        loss_d = d_loss("bce", d(real), d(fake.detach()))
        self.step(self.optims["d"], loss_d)
        with self.frozen(d):
            loss_g = g_loss("bce", d(fake))
        self.step(self.optims["g"], loss_g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    @property
    def latent_dim(self) -> int:
        return self.hp.z_dim

    def decode(self, z, labels=None, codes=None, generator=None):
        return self.generate(z)

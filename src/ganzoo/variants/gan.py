"""GAN (Goodfellow et al. 2014): MLP generator and discriminator, BCE loss, alternating one D
step and one G step, with the non-saturating generator loss the paper recommends in practice."""

from __future__ import annotations

from typing import ClassVar

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
    description = "MLP generator and discriminator, BCE with the non-saturating generator loss"
    HParams: ClassVar[type[BaseHParams]] = GANParams  # widened: subclasses bring their own params

    def build(self) -> None:
        hp, shape = self.hp, self.data.image_shape
        self.nets = {"g": MLPGenerator(hp.z_dim, shape, hp.hidden),
                     "d": MLPDiscriminator(shape, hp.hidden, hp.dropout)}
        self.optims = {"g": self.adam(self.nets["g"].parameters(), "g"),
                       "d": self.adam(self.nets["d"].parameters(), "d")}

    def train_step(self, batch):
        g, d = self.nets["g"], self.nets["d"]
        real = batch["x"]
        fake = g(self.noise(real.shape[0], self.hp.z_dim))
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
        return self.nets["g"](z)

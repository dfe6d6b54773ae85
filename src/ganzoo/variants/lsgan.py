"""LSGAN (Mao et al. 2017): DCGAN nets trained with least-squares losses, eq. (2):
  min_D 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2],   min_G 1/2 E[(D(G(z)) - c)^2].
Defaults a=0, b=1, c=1 (the 0-1 coding); a=-1, b=1, c=0 is the paper's b-c=1, b-a=2 choice.
Adam 2e-4 (0.5, 0.999). DCGAN's nets and its Uniform(-1, 1) prior, which the paper's own code
(xudonmao/LSGAN) draws too."""

from __future__ import annotations

import torch
from pydantic import Field

from ganzoo.losses import d_loss, g_loss
from ganzoo.variants.base import Alternating
from ganzoo.variants.dcgan import DCGAN, DCGANParams


class LSGANParams(DCGANParams):
    a: float = Field(0.0, description="D's target for fakes")
    b: float = Field(1.0, description="D's target for real images")
    c: float = Field(1.0, description="the value G wants D to output for fakes")


class LSGAN(Alternating, DCGAN):
    """DCGAN's nets; the alternating D-then-G schedule with least-squares losses."""

    name = "lsgan"
    description = "DCGAN nets with least-squares losses (targets a, b, c)"
    HParams = LSGANParams

    def d_step(self, batch):
        g, d, hp = self.nets["g"], self.nets["d"], self.hp
        x = batch["x"]
        with torch.no_grad():
            fake = g(self.noise(x.shape[0], hp.z_dim))
        loss = d_loss("ls", d(x), d(fake), a=hp.a, b=hp.b)
        self.step(self.optims["d"], loss)
        return {"loss_d": loss.detach()}

    def g_step(self, batch):
        g, d, hp = self.nets["g"], self.nets["d"], self.hp
        with self.frozen(d):
            loss = g_loss("ls", d(g(self.noise(batch["x"].shape[0], hp.z_dim))), c=hp.c)
        self.step(self.optims["g"], loss)
        return {"loss_g": loss.detach()}

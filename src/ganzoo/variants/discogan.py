"""DiscoGAN (Kim et al. 2017): two encoder-decoder generators G_AB, G_BA (no skip connections,
batch norm, LeakyReLU encoder / ReLU decoder) and two convolutional discriminators. Each
direction's generator loss is the adversarial (BCE) loss of its fake plus the reconstruction
distance d(G_BA(G_AB(a)), a) (MSE, the paper's code default), L_G = L_GAN_B + L_CONST_A +
L_GAN_A + L_CONST_B; the discriminator loss sums both domains' real/fake BCE. One D step then one
G step per batch, Adam 2e-4 (0.5, 0.999). Trains on unpaired or paired data (pairs unused)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.translation import DiscoDiscriminator, DiscoGenerator
from ganzoo.variants.base import HParams
from ganzoo.variants.translation import TwoWayTranslator


class DiscoGANParams(HParams):
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    norm: Literal["batch", "instance"] = "batch"
    lambda_recon: float = Field(1.0, ge=0, description="weight of the reconstruction loss (paper: 1)")
    recon_loss: Literal["mse", "l1"] = "mse"


class DiscoGAN(TwoWayTranslator):
    """Unpaired translation: encoder-decoder Gs, conv Ds, BCE + reconstruction in both directions."""

    name = "discogan"
    description = "unpaired translation: encoder-decoder generators, BCE + reconstruction both ways"
    HParams = DiscoGANParams

    def build(self) -> None:
        hp = self.hp
        c_a, c_b = self.channels()
        size = self.data.image_shape[1]
        self.nets = {"g_ab": DiscoGenerator(c_a, c_b, size, hp.ngf, hp.norm),
                     "g_ba": DiscoGenerator(c_b, c_a, size, hp.ngf, hp.norm),
                     "d_a": DiscoDiscriminator(c_a, size, hp.ndf, hp.norm),
                     "d_b": DiscoDiscriminator(c_b, size, hp.ndf, hp.norm)}
        self.build_optimizers()

    def recon(self, x, target):
        fn = F.mse_loss if self.hp.recon_loss == "mse" else F.l1_loss
        return fn(x.float(), target.float())

    def train_step(self, batch):
        n = self.nets
        a, b = batch["a"], batch["b"]
        fake_b, fake_a = n["g_ab"](a), n["g_ba"](b)
        loss_d = (d_loss("bce", n["d_a"](a), n["d_a"](fake_a.detach()))
                  + d_loss("bce", n["d_b"](b), n["d_b"](fake_b.detach())))
        self.step(self.optims["d"], loss_d)
        with self.frozen(n["d_a"], n["d_b"]):
            adv = g_loss("bce", n["d_b"](fake_b)) + g_loss("bce", n["d_a"](fake_a))
            recon = self.recon(n["g_ba"](fake_b), a) + self.recon(n["g_ab"](fake_a), b)
            loss_g = adv + self.hp.lambda_recon * recon
        self.step(self.optims["g"], loss_g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "loss_g_gan": adv.detach(), "loss_recon": recon.detach()}

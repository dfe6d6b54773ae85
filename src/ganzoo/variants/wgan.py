"""WGAN (Arjovsky et al. 2017, Algorithm 1): a critic with no sigmoid and no log in the loss
(losses 'wasserstein'), every critic parameter clipped to [-c, c] after EVERY critic step,
n_critic critic steps per generator step, RMSprop lr 5e-5, c 0.01. DCGAN nets; the paper's
DCGAN critic keeps batch norm (weight clipping, unlike the gradient penalty, is not per sample).

Each critic step sees a fresh real batch: `batches_per_step` is n_critic, so the loop hands one
batch of n_critic * train.batch_size rows, and `losses.critic_batches` splits it. The reference
code's extra 100 critic steps during the first 25 generator steps are not part of Algorithm 1
and are not done here. z ~ N(0, 1), as the paper's code draws it (WGAN-GP's code too).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from ganzoo.losses import clip_weights, critic_batches, d_loss, g_loss
from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from ganzoo.variants.base import Alternating, BaseHParams, HParams


class WGANParams(HParams):
    lr: float = Field(5e-5, gt=0)
    clip: float = Field(0.01, gt=0)
    n_critic: int = Field(5, ge=1)
    z_dim: int = Field(100, ge=1)
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    critic_norm: Literal["batch", "layer", "instance", "none"] = "batch"


class WGAN(Alternating):
    name = "wgan"
    description = "critic without sigmoid, weight clipping after every critic step, n_critic 5, RMSprop"
    HParams: ClassVar[type[BaseHParams]] = WGANParams  # widened: subclasses bring their own params

    @property
    def batches_per_step(self) -> int:
        return self.hp.n_critic

    def build(self) -> None:
        hp = self.hp
        c, s, _ = self.data.image_shape
        self.nets = {"g": DCGANGenerator(hp.z_dim, s, c, hp.ngf),
                     "d": DCGANDiscriminator(s, c, hp.ndf, norm=hp.critic_norm)}
        for net in self.nets.values():
            init_dcgan_weights(net)
        self.optims = {k: self.make_optimizer(v.parameters(), k) for k, v in self.nets.items()}

    def make_optimizer(self, params, net: str) -> torch.optim.Optimizer:
        # RMSprop: the paper found momentum-based optimisers unstable with a clipped critic.
        return torch.optim.RMSprop(params, lr=self.lr(net), foreach=True)

    # ------------------------------------------------------------------ one critic step
    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        d = self.nets["d"]
        return d_loss("wasserstein", d(real), d(fake))

    def after_critic_step(self) -> None:
        clip_weights(self.nets["d"], self.hp.clip)

    # ------------------------------------------------------------------ the schedule
    def d_step(self, batch):
        """n_critic critic updates, one per chunk of the batch, each with fresh noise."""
        g, losses = self.nets["g"], []
        for part in critic_batches(batch, self.hp.n_critic):
            real = part["x"]
            with torch.no_grad():
                fake = g(self.noise(real.shape[0], self.hp.z_dim))
            loss = self.critic_loss(real, fake)
            self.step(self.optims["d"], loss)
            self.after_critic_step()
            losses.append(loss.detach())
        return {"loss_d": torch.stack(losses).mean()}

    def g_step(self, batch):
        d = self.nets["d"]
        n = max(1, batch["x"].shape[0] // self.hp.n_critic)
        with self.frozen(d):
            loss = g_loss("wasserstein", d(self.nets["g"](self.noise(n, self.hp.z_dim))))
        self.step(self.optims["g"], loss)
        return {"loss_g": loss.detach()}

    @property
    def latent_dim(self) -> int:
        return self.hp.z_dim

    def decode(self, z, labels=None, codes=None, generator=None):
        return self.nets["g"](z)

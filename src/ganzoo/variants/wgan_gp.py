"""WGAN-GP (Gulrajani et al. 2017, Algorithm 1): WGAN's critic loss plus lambda times the
gradient penalty on random interpolates (one mixing weight per sample, the norm over each
sample's flattened gradient: `losses.gradient_penalty`), no weight clipping, n_critic 5, Adam
1e-4 (0, 0.9), lambda 10. The critic has no batch norm, which would make each sample's critic
value, and so its penalised gradient, depend on the rest of the batch: layer norm (the paper's
recommendation) or none/instance.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ganzoo.losses import d_loss, gradient_penalty
from ganzoo.variants.base import HParams
from ganzoo.variants.wgan import WGAN


class WGANGPParams(HParams):
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    gp_lambda: float = Field(10.0, ge=0)
    n_critic: int = Field(5, ge=1)
    z_dim: int = Field(128, ge=1)
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    critic_norm: Literal["layer", "instance", "none"] = "layer"


class WGANGP(WGAN):
    name = "wgan_gp"
    description = "WGAN critic with a per-sample gradient penalty (lambda 10), no batch norm, Adam (0, 0.9)"
    HParams = WGANGPParams
    double_backward_nets = ("d",)  # the penalty differentiates the critic twice: train.compile leaves it eager

    def make_optimizer(self, params, net: str) -> torch.optim.Optimizer:
        return self.adam(params, net)

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        d = self.nets["d"]
        return d_loss("wasserstein", d(real), d(fake)) + self.hp.gp_lambda * gradient_penalty(d, real, fake)

    def after_critic_step(self) -> None:
        pass  # the penalty replaces clipping

"""BEGAN (Berthelot et al. 2017): the discriminator is an auto-encoder and both losses are
built on its reconstruction error L(v) = |v - D(v)| (mean over pixels):
  L_D = L(x) - k_t L(G(z_D)),   L_G = L(G(z_G)),
  k_{t+1} = clamp(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1),
  M_global = L(x) + |gamma L(x) - L(G(z_G))|   (the convergence measure, logged).
gamma 0.75 (the paper: lower gamma, less diversity, as D favours auto-encoding real images),
lambda_k 0.001, k_0 = 0,
Adam 1e-4 (0.5, 0.999), z 64 = h 64, n 128 filters. The paper halves the learning rate when M
stalls; `lr_halve_every` does it on a fixed schedule (as the reference implementation does),
down to `lr_floor`; 0 (the default) keeps the rate constant.

On MNIST G settles on the digit the auto-encoder rebuilds most cheaply (1s, few inked pixels):
the controller's E[L(G)] = gamma E[L(x)] is met by a generator of 1s, and M still falls. At the
paper's 128 filters (and at 64) every seed measured ended all 1s; 16 filters kept 9/10 digits
with one seed of two (benchmarks/RESULTS.md). Look at the samples, not only at M, on digits.

BEGAN-CS (Chang et al., ECCV 2018), `constrained: true`: D's loss gains a latent-space constraint,
constraint_weight * |Enc(G(z)) - z| (mean L1; the paper's alpha 0.1, as in the authors' code), so
D's encoder must map each fake back to the code it came from; distinct codes then cannot share
one image without D's decoder, and so G's loss, telling them apart. The constraint trains D only
(G's loss is BEGAN's) and needs the embedding as wide as z (h_dim = z_dim). Off by default: the
default stays the paper's BEGAN.

k_t lives on the training device and is updated without leaving it (no host sync); it is
part of the checkpoint through `extra_state`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ganzoo.errors import ConfigError
from ganzoo.nets.autoencoder import (
    AutoEncoderDiscriminator,
    Decoder,
    reconstruction_error,
    reconstruction_error_and_code,
)
from ganzoo.variants.base import HParams, Variant


class BEGANParams(HParams):
    lr: float = Field(1e-4, gt=0)
    gamma: float = Field(0.75, gt=0, le=1)
    lambda_k: float = Field(0.001, ge=0)
    k_init: float = Field(0.0, ge=0, le=1)
    z_dim: int = Field(64, ge=1)
    h_dim: int = Field(64, ge=1)
    n_filters: int = Field(128, ge=4)
    # The paper halves the learning rate when M stalls; as in the reference implementation this
    # is a fixed schedule: both rates halve every lr_halve_every steps (0: constant), down to lr_floor.
    lr_halve_every: int = Field(0, ge=0)
    lr_floor: float = Field(2e-5, ge=0)
    # BEGAN-CS: add constraint_weight * |Enc(G(z)) - z| to D's loss (the paper's alpha: 0.1).
    constrained: bool = False
    constraint_weight: float = Field(0.1, ge=0)


class BEGAN(Variant):
    name = "began"
    description = ("auto-encoder discriminator, proportional control of k_t, convergence measure M; "
                   "BEGAN-CS latent constraint as an option")
    HParams = BEGANParams
    uniform_noise = True  # z ~ Uniform(-1, 1), as in the paper

    def build(self) -> None:
        hp = self.hp
        if hp.constrained and hp.h_dim != hp.z_dim:
            raise ConfigError(f"model.began.constrained compares D's code with z, so model.began.h_dim ({hp.h_dim}) "
                              f"must equal model.began.z_dim ({hp.z_dim}); set both to the same size")
        c, s, _ = self.data.image_shape
        self.nets = {"g": Decoder(hp.z_dim, s, c, hp.n_filters, tanh=True),
                     "d": AutoEncoderDiscriminator(s, c, hp.n_filters, hp.h_dim)}
        self.optims = {k: self.adam(v.parameters(), k) for k, v in self.nets.items()}
        self.k = torch.tensor(hp.k_init, device=self.device)
        if hp.lr_halve_every:
            self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(opt, self._halving(opt))
                               for k, opt in self.optims.items()}

    def _halving(self, opt: torch.optim.Optimizer):
        floor = self.hp.lr_floor / opt.param_groups[0]["lr"]
        return lambda step: max(0.5 ** (step // self.hp.lr_halve_every), min(floor, 1.0))

    def z(self, n: int, generator=None) -> torch.Tensor:
        return self.noise(n, self.hp.z_dim, generator)

    def d_step(self, batch):
        g, d = self.nets["g"], self.nets["d"]
        x = batch["x"]
        z = self.z(x.shape[0])
        with torch.no_grad():
            fake = g(z)
        loss_real = reconstruction_error(d, x)
        out = {"loss_real": loss_real.detach()}
        if self.hp.constrained:
            loss_fake, code = reconstruction_error_and_code(d, fake)
            constraint = self.hp.constraint_weight * (code.float() - z.float()).abs().mean()
            loss = loss_real - self.k * loss_fake + constraint
            out["loss_constraint"] = constraint.detach()
        else:
            loss = loss_real - self.k * reconstruction_error(d, fake)
        self.step(self.optims["d"], loss)
        return {"loss_d": loss.detach(), **out}

    def g_step(self, batch):
        d = self.nets["d"]
        with self.frozen(d):
            loss = reconstruction_error(d, self.nets["g"](self.z(batch["x"].shape[0])))
        self.step(self.optims["g"], loss)
        return {"loss_g": loss.detach()}

    @torch.no_grad()
    def update_k(self, loss_real: torch.Tensor, loss_fake: torch.Tensor) -> torch.Tensor:
        """Proportional control of k_t; returns the convergence measure M."""
        balance = self.hp.gamma * loss_real - loss_fake
        self.k = (self.k + self.hp.lambda_k * balance).clamp(0.0, 1.0)
        return loss_real + balance.abs()

    def train_step(self, batch):
        d_out = self.d_step(batch)
        g_out = self.g_step(batch)
        m = self.update_k(d_out["loss_real"], g_out["loss_g"])
        self.step_schedulers()
        out = {"loss_d": d_out["loss_d"], "loss_g": g_out["loss_g"], "k": self.k.clone(), "M": m}
        if "loss_constraint" in d_out:
            out["loss_constraint"] = d_out["loss_constraint"]
        return out

    @property
    def latent_dim(self) -> int:
        return self.hp.z_dim

    def decode(self, z, labels=None, codes=None, generator=None):
        return self.nets["g"](z)

    def extra_state(self) -> dict:
        return {"k": self.k}

    def load_extra_state(self, state: dict) -> None:
        if "k" in state:
            self.k = torch.as_tensor(state["k"], dtype=torch.float32).to(self.device).clone()

"""CycleGAN (Zhu et al. 2017): two ResNet generators G: A->B and F: B->A, two PatchGAN
discriminators, least-squares adversarial losses, cycle consistency |F(G(a)) - a| + |G(F(b)) - b|
weighted lambda (10), identity |G(b) - b| + |F(a) - a| weighted 0.5 x lambda, discriminators
trained on a history pool of 50 fakes. Adam 2e-4 (0.5, 0.999); the learning rate is constant for
the first `decay_start` fraction of train.steps, then falls linearly to zero. As in the paper's
code, both generators share one optimizer and both discriminators another.

A step keeps no per-step state on the host, so `train.cuda_graphs` can capture it: on CUDA the
schedule's step count and learning rates are device tensors (schedules.LinearDecay, read by the
fused Adam), the pools count on the device, and their generators are registered with the graph
(`cuda_generators`). On the CPU the schedule is torch's LambdaLR as before.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ganzoo.image_pool import ImagePool
from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.translation import PatchDiscriminator, ResnetGenerator
from ganzoo.variants.base import HParams
from ganzoo.variants.schedules import LinearDecay, float_lrs, lambda_decay, takes_tensor_lr
from ganzoo.variants.translation import TwoWayTranslator


class CycleGANParams(HParams):
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    n_blocks: int | None = Field(None, ge=1, description="ResNet blocks; None: 6 below 256 px, 9 from 256 (paper)")
    n_layers: int = Field(3, ge=1, description="PatchGAN stride-2 layers (3: 70x70 patches)")
    norm: Literal["instance", "batch"] = "instance"
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0, description="identity weight as a fraction of lambda_cycle")
    pool_size: int = Field(50, ge=0)
    decay_start: float = Field(0.5, ge=0, le=1,
                               description="fraction of train.steps before the LR decays linearly to 0")


class CycleGAN(TwoWayTranslator):
    """Unpaired translation: ResNet Gs, PatchGAN Ds, LSGAN + cycle + identity, image pools."""

    name = "cyclegan"
    description = "unpaired translation: ResNet generators, PatchGAN, LSGAN + cycle + identity losses, image pool"
    HParams = CycleGANParams
    paper_jitter: ClassVar[bool] = True  # load at 286, random crop 256, flip; A and B independently
    supports_cuda_graphs: ClassVar[bool | None] = True  # device-side schedule and pools (module docstring)

    def build(self) -> None:
        hp = self.hp
        c_a, c_b = self.channels()
        size = self.data.image_shape[1]
        blocks = hp.n_blocks or (9 if size >= 256 else 6)
        self.nets = {"g_ab": ResnetGenerator(c_a, c_b, hp.ngf, blocks, hp.norm),
                     "g_ba": ResnetGenerator(c_b, c_a, hp.ngf, blocks, hp.norm),
                     "d_a": PatchDiscriminator(c_a, size, hp.ndf, hp.n_layers, hp.norm),
                     "d_b": PatchDiscriminator(c_b, size, hp.ndf, hp.n_layers, hp.norm)}
        self.build_optimizers()
        total = self.train_cfg.steps if self.train_cfg is not None else 1
        start = int(hp.decay_start * total)
        if self.device.type == "cuda" and all(takes_tensor_lr(opt) for opt in self.optims.values()):
            self.schedulers = {k: LinearDecay(opt, start, total, self.device) for k, opt in self.optims.items()}
        else:  # the CPU, or a foreach Adam (the benchmarks' reference loop): a float lr
            self.schedulers = {k: lambda_decay(opt, start, total) for k, opt in self.optims.items()}
        # Seeds from the global RNG (seeded by the loop), so the pools follow train.seed.
        seeds = torch.randint(2 ** 62, (2,)).tolist()
        self.pools = {"a": ImagePool(hp.pool_size, seeds[0]), "b": ImagePool(hp.pool_size, seeds[1])}

    def generator_terms(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator objective's parts (discriminators must be frozen by the caller)."""
        n = self.nets
        fake_b, fake_a = n["g_ab"](a), n["g_ba"](b)
        # g_loss('ls') carries LSGAN's 1/2; CycleGAN weighs the plain MSE (D(G(x)) - 1)^2 against lambda.
        adv = 2.0 * (g_loss("ls", n["d_b"](fake_b)) + g_loss("ls", n["d_a"](fake_a)))
        cycle = F.l1_loss(n["g_ba"](fake_b).float(), a.float()) + F.l1_loss(n["g_ab"](fake_a).float(), b.float())
        if self.hp.lambda_identity > 0 and a.shape[1] == b.shape[1]:  # identity needs G to accept B's channels
            identity = F.l1_loss(n["g_ab"](b).float(), b.float()) + F.l1_loss(n["g_ba"](a).float(), a.float())
        else:
            identity = torch.zeros((), device=a.device)
        return {"fake_a": fake_a, "fake_b": fake_b, "adv": adv, "cycle": cycle, "identity": identity}

    def train_step(self, batch):
        hp, n = self.hp, self.nets
        a, b = batch["a"], batch["b"]
        with self.frozen(n["d_a"], n["d_b"]):
            t = self.generator_terms(a, b)
            loss_g = t["adv"] + hp.lambda_cycle * t["cycle"] + hp.lambda_cycle * hp.lambda_identity * t["identity"]
        self.step(self.optims["g"], loss_g)
        # D on the pools' mix of current and past fakes (detached by the pool).
        loss_d_a = d_loss("ls", n["d_a"](a), n["d_a"](self.pools["a"].query(t["fake_a"])))
        loss_d_b = d_loss("ls", n["d_b"](b), n["d_b"](self.pools["b"].query(t["fake_b"])))
        self.step(self.optims["d"], loss_d_a + loss_d_b)
        self.step_schedulers()
        return {"loss_d_a": loss_d_a.detach(), "loss_d_b": loss_d_b.detach(), "loss_g": loss_g.detach(),
                "loss_g_gan": t["adv"].detach(), "loss_cycle": t["cycle"].detach(),
                "loss_identity": t["identity"].detach()}

    def cuda_generators(self) -> list[torch.Generator]:
        """The pools' generators, once on CUDA (their first query moves them there)."""
        return [p.generator for p in self.pools.values() if p.generator.device.type == "cuda"]

    def load_state_dict(self, state: dict, with_optim: bool = True) -> None:
        super().load_state_dict(state, with_optim)
        for k, sched in self.schedulers.items():
            if not isinstance(sched, LinearDecay):  # a checkpoint from a CUDA run may hold tensor lrs
                float_lrs(self.optims[k])

    def extra_state(self) -> dict:
        return {f"pool_{k}": pool.state_dict() for k, pool in self.pools.items()}

    def load_extra_state(self, state: dict) -> None:
        for k, pool in self.pools.items():
            if f"pool_{k}" in state:
                pool.load_state_dict(state[f"pool_{k}"], self.device)

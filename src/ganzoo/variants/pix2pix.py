"""Pix2Pix (Isola et al. 2017): a U-Net generator with skip connections and dropout maps A to B;
a 70x70 PatchGAN judges (input, output) pairs, so D is conditioned on the input by channel
concatenation. G minimises the adversarial loss plus lambda_L1 (100) times L1 to the target; D's
loss is halved, as in the paper, to slow it relative to G. Adam 2e-4, betas (0.5, 0.999).

Inference follows section 3.3: dropout, G's only noise, stays on at test time, and batch norm
uses the statistics of the test batch (with the paper's batch size 1, instance normalisation).
`translate(x, seed=...)` draws that noise from its own seeded stream, so a translation is
reproducible: the same images, batched the same way, with the same seed give the same output.
`test_noise: false` gives the deterministic alternative (running statistics, no dropout)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ganzoo.losses import d_loss, g_loss
from ganzoo.nets.translation import PatchDiscriminator, UNetGenerator, init_normal, noisy_inference
from ganzoo.variants.base import HParams, Variant
from ganzoo.variants.translation import check_direction


class Pix2PixParams(HParams):
    ngf: int = Field(64, ge=4)
    ndf: int = Field(64, ge=4)
    n_layers: int = Field(3, ge=1, description="PatchGAN stride-2 layers (3: 70x70 patches); fewer on small images")
    lambda_l1: float = Field(100.0, ge=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    norm: Literal["batch", "instance"] = "batch"
    # Section 3.3's test-time noise (dropout on, the test batch's statistics); false: eval mode.
    test_noise: bool = True


class Pix2Pix(Variant):
    """Paired translation: U-Net G, PatchGAN D on (input, output), adversarial + L1."""

    name = "pix2pix"
    description = "paired translation: U-Net generator, PatchGAN on (input, output), adversarial + 100 x L1"
    data_kind = "paired"
    HParams = Pix2PixParams
    translates = True
    directions: ClassVar[tuple[str, ...]] = ("AtoB",)
    default_source: ClassVar[str] = "digits_paired"  # the embedded offline task this variant defaults to
    paper_jitter: ClassVar[bool] = True  # load at 286, random crop 256, flip: the same on both halves

    def build(self) -> None:
        hp = self.hp
        c_a, size, _ = self.data.image_shape
        c_b = (self.data.image_shape_b or self.data.image_shape)[0]
        self.nets = {"g": UNetGenerator(c_a, c_b, size, hp.ngf, hp.norm, hp.dropout),
                     "d": PatchDiscriminator(c_a + c_b, size, hp.ndf, hp.n_layers, hp.norm)}
        for net in self.nets.values():
            init_normal(net)
        self.optims = {k: self.adam(v.parameters(), k) for k, v in self.nets.items()}

    def train_step(self, batch):
        g, d = self.nets["g"], self.nets["d"]
        a, b = batch["a"], batch["b"]
        fake = g(a)
        loss_d = 0.5 * d_loss("bce", d(torch.cat([a, b], 1)), d(torch.cat([a, fake.detach()], 1)))
        self.step(self.optims["d"], loss_d)
        with self.frozen(d):
            loss_gan = g_loss("bce", d(torch.cat([a, fake], 1)))
            loss_l1 = F.l1_loss(fake.float(), b.float())
            loss_g = loss_gan + self.hp.lambda_l1 * loss_l1
        self.step(self.optims["g"], loss_g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "loss_g_gan": loss_gan.detach(), "loss_l1": loss_l1.detach()}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AtoB", seed: int = 0) -> torch.Tensor:
        """A -> B. With test_noise (the default) dropout masks come from `seed`, on a forked
        stream: the caller's RNG is left as it was. Without it, G runs as the caller left it
        (eval mode for inference) and `seed` is unused."""
        check_direction(self, direction)
        g = self.nets["g"]
        if not self.hp.test_noise:
            return g(x)
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []), noisy_inference(g):
            if cuda:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(seed)  # this device's stream only, restored by fork_rng
            else:
                torch.default_generator.manual_seed(seed)
            return g(x)

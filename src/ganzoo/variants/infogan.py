"""InfoGAN (Chen et al. 2016): G(z, c) with a 10-way categorical code and continuous codes
Uniform(-1, 1); Q, a head on D's trunk, predicts c from an image, and the mutual-information
bound L_I (cross-entropy + unit-variance Gaussian NLL, losses.info_loss) is added to BOTH
players' losses, as in the paper's min_G,Q max_D V(D, G) - lambda L_I(G, Q) and its reference
code: the D step minimises L_D + L_I over D's trunk, D's head and Q; the G step minimises
L_G + L_I over G. So L_I trains Q (and the shared trunk) and pushes G to make c recoverable.

Defaults are the reference code's MNIST run (openai/InfoGAN, launchers/run_mnist_exp.py): the
paper's MNIST nets (`arch: mnist`, appendix C.1), z 62 ~ Uniform(-1, 1), info_reg_coeff 1 for the
categorical AND the continuous codes (the paper's text suggests a smaller lambda for continuous
codes; its MNIST code does not: lambda_cont 0.1 was ganzoo's earlier default), Adam lr_d 2e-4
(D and Q), lr_g 1e-3, beta1 0.5, batch norm in Q. One departure, measured: TWO G updates per D
update (`g_steps: 2`; the reference code makes one). On MNIST at 32x32 (8000 steps at batch 32,
the quality benchmark's CPU budget) it took the categorical code's matched accuracy from 0.855 to
0.972 / 0.972 / 0.789 over seeds 0-2: with one G update, pairs of codes split look-alike digits
(4/9, 3/5) between them (benchmarks/RESULTS.md). `g_steps: 1` is the reference run. That run trains
5000 steps at batch 128 (`train.batch_size=128`); benchmarks/studies/infogan_study.py measures these
choices one by one.

Codes: {"cat": int in 0..n_cat-1, "c1": float, "c2": float, ...}. `sample(codes=...)` applies a
given code to all n samples and draws the others from the passed generator; every code is drawn
even when given, so changing one code leaves z and the other codes as they were (a walk).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ganzoo.errors import ConfigError
from ganzoo.losses import d_loss, g_loss, info_loss
from ganzoo.nets.blocks import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from ganzoo.nets.conditional import QHead
from ganzoo.nets.infogan_mnist import LEAK as MNIST_LEAK
from ganzoo.nets.infogan_mnist import MNISTInfoDiscriminator, MNISTInfoGenerator
from ganzoo.variants.base import Alternating, HParams


class InfoGANParams(HParams):
    # g_steps came with a default of 1 and became 2: a checkpoint without it made one G update.
    absent_means: ClassVar[dict[str, Any]] = {"g_steps": 1}
    z_dim: int = Field(62, ge=1)
    n_cat: int = Field(10, ge=2)
    n_cont: int = Field(2, ge=0)
    lambda_cat: float = Field(1.0, ge=0)
    lambda_cont: float = Field(1.0, ge=0)  # the reference code's info_reg_coeff for every code
    lr_g: float = Field(1e-3, gt=0)
    lr_d: float = Field(2e-4, gt=0)  # used for D and Q together
    ngf: int = Field(64, ge=4)  # arch=dcgan only
    ndf: int = Field(64, ge=4)  # arch=dcgan only
    q_hidden: int = Field(128, ge=4)
    q_norm: bool = True  # batch norm in Q's hidden layer, as in the reference code
    # Who L_I trains besides G. "d" (the reference code): Q and D's shared trunk, in D's step,
    # with D's optimizer. "g" (common PyTorch ports): Q's head only, in G's step, with G's
    # optimizer; the trunk then learns from D's adversarial loss alone.
    q_update: Literal["d", "g"] = "d"
    g_steps: int = Field(2, ge=1)  # G updates per D update (the reference code: 1; module docstring)
    # mnist: the paper's own MNIST nets (fixed widths, FC 1024 layers; image size a multiple of
    # 4), nets/infogan_mnist.py; dcgan: the DCGAN nets (ngf/ndf widths, any power-of-two size).
    arch: Literal["dcgan", "mnist"] = "mnist"


class InfoGAN(Alternating):
    name = "infogan"
    description = "categorical + continuous latent codes recovered by a Q head on D (mutual information)"
    HParams = InfoGANParams
    takes_codes = True
    # z ~ Uniform(-1, 1) like the reference code's latent spec (Uniform(62)): a third of N(0, 1)'s
    # variance, so z does not drown the one-hot code at G's input.
    uniform_noise = True

    @property
    def n_cat(self) -> int:
        return self.hp.n_cat

    @property
    def n_cont(self) -> int:
        return self.hp.n_cont

    @property
    def code_names(self) -> list[str]:
        return ["cat"] + [f"c{i + 1}" for i in range(self.n_cont)]

    def build(self) -> None:
        hp = self.hp
        c, s, _ = self.data.image_shape
        g_in = hp.z_dim + hp.n_cat + hp.n_cont
        d: MNISTInfoDiscriminator | DCGANDiscriminator
        g: MNISTInfoGenerator | DCGANGenerator
        if hp.arch == "mnist":
            if s % 4:
                raise ConfigError(f"model.infogan.arch=mnist needs an image size divisible by 4, got {s}; "
                                  "set data.image_size (e.g. 28 or 32) or model.infogan.arch=dcgan")
            d = MNISTInfoDiscriminator(s, c)  # D before G: the construction order seeds have always seen
            g = MNISTInfoGenerator(g_in, s, c)
            q = QHead(d.trunk_channels, hp.n_cat, hp.n_cont, hp.q_hidden, flat=True, leak=MNIST_LEAK,
                      norm=hp.q_norm)
        else:
            d = DCGANDiscriminator(s, c, hp.ndf)
            g = DCGANGenerator(g_in, s, c, hp.ngf)
            q = QHead(d.trunk_channels, hp.n_cat, hp.n_cont, hp.q_hidden, norm=hp.q_norm)
        self.nets = {"g": g, "d": d, "q": q}
        for net in self.nets.values():
            init_dcgan_weights(net)
        with_q = list(q.parameters())
        self.optims = {"g": self.adam([*g.parameters(), *(with_q if hp.q_update == "g" else [])], "g"),
                       "d": self.adam([*d.parameters(), *(with_q if hp.q_update == "d" else [])], "d")}

    # ------------------------------------------------------------------ codes
    def draw_codes(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        cat = torch.randint(self.n_cat, (n,), device=self.device, generator=generator)
        cont = torch.rand(n, self.n_cont, device=self.device, generator=generator) * 2 - 1
        return cat, cont

    def latent(self, z: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """G's input: [z, one_hot(cat), cont]."""
        return torch.cat([z, F.one_hot(cat, self.n_cat).to(z.dtype), cont.to(z.dtype)], 1)

    def apply_codes(self, cat: torch.Tensor, cont: torch.Tensor, codes: dict) -> tuple[torch.Tensor, torch.Tensor]:
        unknown = sorted(set(codes) - set(self.code_names))
        if unknown:
            raise ConfigError(f"infogan: unknown code {unknown[0]!r}; codes are {', '.join(self.code_names)}")
        cat, cont = cat.clone(), cont.clone()
        if "cat" in codes:
            value = codes["cat"]
            whole = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()
            if not whole or not 0 <= int(value) < self.n_cat:
                raise ConfigError(f"infogan: cat={value!r} must be an integer in 0..{self.n_cat - 1}")
            cat.fill_(int(value))
        for i in range(self.n_cont):
            if f"c{i + 1}" in codes:
                cont[:, i] = float(codes[f"c{i + 1}"])
        return cat, cont

    # ------------------------------------------------------------------ training
    def _fake(self, n: int):
        cat, cont = self.draw_codes(n)
        return self.nets["g"](self.latent(self.noise(n, self.hp.z_dim), cat, cont)), cat, cont

    def _info(self, features, cat, cont) -> torch.Tensor:
        cat_logits, cont_mean = self.nets["q"](features)
        return info_loss(cat_logits, cat, cont_mean, cont,
                         lambda_cat=self.hp.lambda_cat, lambda_cont=self.hp.lambda_cont)

    def d_step(self, batch):
        d = self.nets["d"]
        x = batch["x"]
        with torch.no_grad():
            fake, cat, cont = self._fake(x.shape[0])
        feats = d.features(fake)
        adv = d_loss("bce", d(x), d.head(feats).flatten(1).squeeze(1))
        if self.hp.q_update == "g":  # L_I is G's and Q's business only
            self.step(self.optims["d"], adv)
            return {"loss_d": adv.detach()}
        info = self._info(feats, cat, cont)
        self.step(self.optims["d"], adv + info)
        return {"loss_d": adv.detach(), "loss_info": info.detach()}

    def g_step(self, batch):
        d, q = self.nets["d"], self.nets["q"]
        fake, cat, cont = self._fake(batch["x"].shape[0])
        with self.frozen(d, *([q] if self.hp.q_update == "d" else [])):
            feats = d.features(fake)
            adv = g_loss("bce", d.head(feats).flatten(1).squeeze(1))
            info = self._info(feats, cat, cont)
        self.step(self.optims["g"], adv + info)
        return {"loss_g": adv.detach(), "loss_info_g": info.detach()}

    def train_step(self, batch):
        out = self.d_step(batch)
        for _ in range(self.hp.g_steps):  # each G update draws fresh z and codes
            g_out = self.g_step(batch)
        return {**out, **g_out}

    @property
    def latent_dim(self) -> int:
        return self.hp.z_dim

    def load_state_dict(self, state: dict, with_optim: bool = True) -> None:
        # A checkpoint from before model.infogan.arch existed holds the DCGAN nets (then the only
        # ones) and its config has no arch, so it resolves to today's default (mnist): rebuild the
        # nets its weights belong to instead of failing on every key.
        held = "mnist" if "fc.0.weight" in state["nets"]["g"] else "dcgan"
        if held != self.hp.arch:
            self.hp = self.hp.model_copy(update={"arch": held})
            self.build()
            for net in self.nets.values():
                net.to(self.device)
        super().load_state_dict(state, with_optim)

    def decode(self, z, labels=None, codes=None, generator=None):
        cat, cont = self.draw_codes(z.shape[0], generator)
        if codes:
            cat, cont = self.apply_codes(cat, cont, codes)
        return self.nets["g"](self.latent(z, cat, cont))

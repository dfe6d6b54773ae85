"""The variant contract. A variant owns its networks and optimizers and one `train_step(batch)`
that runs its paper's update order and returns detached loss tensors; everything else (device,
AMP, logging, checkpoints, progress) belongs to the loop in `ganzoo.training`.

Everything the loop, sampling, evaluation or serving reads from a variant is declared on `Variant`
below with a neutral default, so a new variant states only where it differs (see
docs/adding_a_variant.md; a variant is tested by being registered).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn


class HParams(BaseModel):
    """Hyper-parameters every variant has; each variant subclasses this with its paper's
    defaults. Unknown keys in params.yaml's `model:` section are rejected, and so is an
    infinite or NaN float in any variant's fields (subclasses inherit both)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # Hyper-parameters added after checkpoints were written whose default has changed since: the
    # value a checkpoint without the key trained with (read by registry.as_trained), so that a new
    # default never rewrites what an old checkpoint trained, nor lets a resume switch it unnoticed.
    absent_means: ClassVar[dict[str, Any]] = {}
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)

    @field_validator("betas", check_fields=False)  # also where a variant re-declares betas
    @classmethod
    def _betas_in_unit_interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):  # Adam's moment decays: torch raises outside [0, 1)
            raise ValueError(f"Adam's betas must each be in [0, 1), e.g. [0.5, 0.999]; got {list(v)}")
        return v


class DataSpec(BaseModel):
    """What the variant learns from, taken from the prepared dataset's manifest and stored in
    every checkpoint so that a checkpoint loads without the data or the params file."""

    kind: str = "images"
    image_shape: tuple[int, int, int]
    num_classes: int | None = None
    classes: list[str] | None = None
    image_shape_b: tuple[int, int, int] | None = None  # translation: target domain
    content_hash: str | None = None
    source: str | None = None


# Inside `Variant`, `HParams` names the class attribute (each variant's own model), so annotations
# there refer to the base model by this name.
BaseHParams = HParams


class Variant(ABC):
    # ------------------------------------------------------------------ the declared contract
    # Identity and data: the registry, `ganzoo variants` and `prepare` read these.
    name: ClassVar[str]
    description: ClassVar[str] = ""  # one line for `ganzoo variants`
    HParams: ClassVar[type[BaseHParams]] = HParams  # the paper's defaults; params.yaml's model.<name>
    data_kind: ClassVar[str] = "images"  # images | labelled | paired | unpaired
    default_source: ClassVar[str] = "digits"  # what data.source=auto means for this variant
    paper_jitter: ClassVar[bool] = False  # the paper's crop + flip augmentation (data.jitter=null, >= 128 px)
    # What it generates from: sampling, evaluation and the served model read these.
    takes_labels: ClassVar[bool] = False  # sample(labels=...) (cgan)
    takes_codes: ClassVar[bool] = False  # sample(codes=...) (infogan)
    translates: ClassVar[bool] = False  # translate(x, direction) instead of sample()
    directions: ClassVar[tuple[str, ...]] = ()  # the directions translate() accepts
    uniform_noise: ClassVar[bool] = False  # latent prior: N(0, 1) unless the paper says Uniform(-1, 1)
    # How the loop may run it (training.device reads these).
    double_backward_nets: ClassVar[tuple[str, ...]] = ()  # nets differentiated twice: train.compile leaves them eager
    supports_cuda_graphs: ClassVar[bool | None] = None  # None: decided from schedulers / extra_state

    @property
    def batches_per_step(self) -> int:
        """How many batches one train_step consumes (n_critic for WGANs): the loop hands it one
        batch with batches_per_step * train.batch_size rows, and the variant chunks it, so every
        critic step sees fresh real data."""
        return 1

    @property
    def latent_dim(self) -> int | None:
        """Size of the noise vector `decode` maps to an image; None for translation variants."""
        return None

    def __init__(self, hp: BaseHParams, data: DataSpec, device: torch.device, train_cfg=None):
        # Any: each variant reads its own HParams subclass's fields (z_dim, ngf...), validated by
        # pydantic; typing them per variant would take a generic Variant[P].
        self.hp: Any = hp
        self.data = data
        self.device = torch.device(device)
        self.train_cfg = train_cfg
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.build()
        for net in self.nets.values():
            net.to(self.device)

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def build(self) -> None:
        """Create self.nets and self.optims (and self.schedulers where the paper has one)."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One training step in the paper's update order; returns detached loss tensors."""

    def decode(self, z: torch.Tensor, labels=None, codes=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise vectors (N, latent_dim) -> N images in [-1, 1]; labels/codes fix the condition
        (drawn from `generator` when not given). Interpolation sheets walk z through this."""
        raise NotImplementedError(f"{self.name} does not generate from noise; use `ganzoo translate`")

    def sample(self, n: int, generator: torch.Generator | None = None, labels=None, codes=None) -> torch.Tensor:
        """n images in [-1, 1], NCHW, on self.device: z from the prior, then `decode`."""
        if self.latent_dim is None:
            raise NotImplementedError(f"{self.name} does not sample from noise; use `ganzoo translate`")
        return self.decode(self.noise(n, self.latent_dim, generator), labels=labels, codes=codes, generator=generator)

    def translate(self, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is not a translation variant")

    # ------------------------------------------------------------------ shared helpers
    def lr(self, net: str) -> float:
        """Learning rate of one network: train.lr_g / train.lr_d, else train.lr, else the variant's."""
        tc = self.train_cfg
        if tc is not None:
            specific = tc.lr_g if net == "g" else tc.lr_d
            if specific is not None:
                return specific
            if tc.lr is not None:
                return tc.lr
        return getattr(self.hp, f"lr_{net}", None) or self.hp.lr

    def adam(self, params, net: str, betas=None) -> torch.optim.Optimizer:
        # Fused kernels on CUDA avoid one launch per parameter tensor; foreach elsewhere.
        fused = self.device.type == "cuda"
        return torch.optim.Adam(params, lr=self.lr(net), betas=tuple(betas or self.hp.betas),
                                fused=fused, foreach=None if fused else True)

    def noise(self, n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent prior: N(0, 1), or Uniform(-1, 1) for variants whose paper says so."""
        if self.uniform_noise:
            return torch.rand(n, dim, device=self.device, generator=generator) * 2 - 1
        return torch.randn(n, dim, device=self.device, generator=generator)

    @staticmethod
    @contextmanager
    def frozen(*modules: nn.Module):
        """Skip parameter gradients of `modules` (e.g. D during the G step): less work, and the
        other network's .grad stays untouched."""
        flags = [[p.requires_grad for p in m.parameters()] for m in modules]
        for m in modules:
            m.requires_grad_(False)
        try:
            yield
        finally:
            for m, fl in zip(modules, flags, strict=True):
                for p, f in zip(m.parameters(), fl, strict=True):
                    p.requires_grad_(f)

    @staticmethod
    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def cuda_generators(self) -> list[torch.Generator]:
        """CUDA generators train_step draws from besides the default one (CycleGAN's image pools):
        a captured CUDA graph must register them to replay their draws like eager steps."""
        return []

    def step_schedulers(self) -> None:
        """Advance every lr scheduler by one training step (variants whose paper decays the rate)."""
        for sched in self.schedulers.values():
            sched.step()

    @contextmanager
    def sampling(self):
        """eval mode, no autograd and an untouched global RNG (dropout noise drawn while sampling
        mid-training must not shift the training that follows); each net's mode is restored."""
        modes = {k: net.training for k, net in self.nets.items()}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            self.eval()
            try:
                yield self
            finally:
                for k, net in self.nets.items():
                    net.train(modes[k])

    def train(self, mode: bool = True) -> Variant:
        for net in self.nets.values():
            net.train(mode)
        return self

    def eval(self) -> Variant:
        return self.train(False)

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict:
        """Variant state beyond nets/optimizers (BEGAN's k_t, CycleGAN's image pools...)."""
        return {}

    def load_extra_state(self, state: dict) -> None:  # noqa: B027 -- optional hook: most variants keep no extra state
        pass

    def state_dict(self) -> dict:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optims": {k: v.state_dict() for k, v in self.optims.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict, with_optim: bool = True) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        if with_optim:
            for k, opt in self.optims.items():
                opt.load_state_dict(_keep_implementation(opt, state["optims"][k]))
            for k, s in self.schedulers.items():
                s.load_state_dict(state["schedulers"][k])
        self.load_extra_state(state.get("extra", {}))


# How Adam computes (foreach / fused / capturable) is this process's choice for its device, not
# training state: a checkpoint written on another device, or by a train.cuda_graphs run, must not
# switch it. A CPU checkpoint's foreach=True would make CUDA's Adam refuse CycleGAN's tensor lr.
_IMPLEMENTATION = ("foreach", "fused", "capturable")


def _keep_implementation(opt: torch.optim.Optimizer, saved: dict) -> dict:
    """`saved` (an optimizer state_dict) with `opt`'s own implementation flags; torch then places
    the step counters as those flags need (on the device when fused or capturable)."""
    groups = [{**sg, **{f: g[f] for f in _IMPLEMENTATION if f in g}}
              for sg, g in zip(saved["param_groups"], opt.param_groups, strict=False)]  # torch checks the count
    return {**saved, "param_groups": groups}


class Alternating(Variant):
    """One discriminator (critic) update, then one generator update, on the same batch: the
    order of most papers here. Subclasses write `d_step` and `g_step`, each returning its losses."""

    @abstractmethod
    def d_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def g_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def train_step(self, batch):
        return {**self.d_step(batch), **self.g_step(batch)}

"""Adversarial losses by name, the gradient penalty and weight clipping: written once, used by
every variant. Discriminator outputs are raw scores (logits / critic values); each loss applies
its own link (softplus for BCE, none for Wasserstein)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("bce", "ls", "wasserstein", "hinge")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, *, a: float = 0.0, b: float = 1.0) -> torch.Tensor:
    """Discriminator/critic loss to *minimise*. `ls` uses targets b (real) and a (fake), LSGAN eq. (2)."""
    real, fake = real.float(), fake.float()
    if kind == "bce":  # -log D(x) - log(1 - D(G(z))), in the numerically stable softplus form
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "ls":
        return 0.5 * ((real - b) ** 2).mean() + 0.5 * ((fake - a) ** 2).mean()
    if kind == "wasserstein":  # critic maximises E[D(x)] - E[D(G(z))]
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; use one of {', '.join(LOSSES)}")


def g_loss(kind: str, fake: torch.Tensor, *, c: float = 1.0) -> torch.Tensor:
    """Generator loss to minimise. `bce` is the non-saturating -log D(G(z)) of Goodfellow et al.;
    `ls` pulls D(G(z)) to c."""
    fake = fake.float()
    if kind == "bce":
        return F.softplus(-fake).mean()
    if kind == "ls":
        return 0.5 * ((fake - c) ** 2).mean()
    if kind in ("wasserstein", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; use one of {', '.join(LOSSES)}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *, target: float = 1.0,
                     cond=None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - 1)^2] on interpolates
    x_hat = eps * real + (1 - eps) * fake with ONE eps per sample (shape B,1,1,1), and the norm
    taken over each sample's flattened gradient, not the whole batch."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat) if cond is None else critic(x_hat, cond)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).float().norm(2, dim=1)
    return ((norms - target) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """WGAN (Arjovsky et al. 2017): clamp every critic parameter to [-c, c] after each critic step."""
    for p in module.parameters():
        p.clamp_(-c, c)


def critic_batches(batch: dict[str, torch.Tensor], n_critic: int) -> list[dict[str, torch.Tensor]]:
    """The critic-steps-per-generator-step schedule (WGAN Algorithm 1): the loop hands a variant
    with `batches_per_step = n_critic` one batch of n_critic * B rows; this splits it into n_critic
    batches so every critic step sees fresh real samples, never a re-used or re-indexed batch."""
    rows = next(iter(batch.values())).shape[0]
    if rows < n_critic:
        raise ValueError(f"a batch of {rows} rows cannot feed {n_critic} critic steps; "
                         f"hand train_step n_critic * batch_size rows")
    parts = {k: v.tensor_split(n_critic) for k, v in batch.items()}
    return [{k: parts[k][i] for k in batch} for i in range(n_critic)]


def info_loss(cat_logits: torch.Tensor, cat: torch.Tensor, cont_mean: torch.Tensor, cont: torch.Tensor,
              *, lambda_cat: float = 1.0, lambda_cont: float = 0.1) -> torch.Tensor:
    """InfoGAN (Chen et al. 2016) variational bound on I(c; G(z, c)), as a loss to minimise:
    cross-entropy of Q's categorical prediction plus the NLL of the continuous codes under a
    unit-variance Gaussian centred on Q's prediction (0.5 * squared error, summed over codes).
    The entropy H(c) is constant and dropped."""
    ce = F.cross_entropy(cat_logits.float(), cat)
    nll = 0.5 * ((cont_mean.float() - cont.float()) ** 2).sum(1).mean() if cont.shape[1] else ce.new_zeros(())
    return lambda_cat * ce + lambda_cont * nll

"""Issue 3's six image-synthesis variants: the maths that defines each one (gradient penalty,
clipping, k_t control, information loss, least-squares targets) and the contract every variant
keeps (finite losses, each sub-step touches only its own player, reproducible sampling,
checkpoint round trip). Tiny nets on random 16/32-pixel images: fast on CPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganzoo import losses
from ganzoo.config import load_config
from ganzoo.data.sampler import DeviceBatches
from ganzoo.errors import ConfigError
from ganzoo.training.loop import data_spec, train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared

TINY = {
    "cgan": {"ngf": 8, "ndf": 8, "z_dim": 16, "embed_dim": 8},
    "infogan": {"ngf": 8, "ndf": 8, "z_dim": 16, "q_hidden": 16, "arch": "dcgan"},
    "wgan": {"ngf": 8, "ndf": 8, "z_dim": 16, "n_critic": 3},
    "wgan_gp": {"ngf": 8, "ndf": 8, "z_dim": 16, "n_critic": 3},
    "lsgan": {"ngf": 8, "ndf": 8, "z_dim": 16},
    "began": {"n_filters": 8, "h_dim": 8, "z_dim": 8},
}
VARIANTS = list(TINY)
# The contract tests also run InfoGAN with the paper's MNIST nets (fixed widths: TINY's ignored).
CASES = [pytest.param(n, None, id=n) for n in VARIANTS] + [
    pytest.param("infogan", {"arch": "mnist"}, id="infogan-mnist")]
BATCH = 6


def overrides(name: str, extra: dict | None = None) -> list[str]:
    values = {**TINY[name], **(extra or {})}
    return [f"variant={name}", *(f"model.{name}.{k}={v}" for k, v in values.items())]


def build(name: str, size: int = 16, extra: dict | None = None, seed: int = 0):
    torch.manual_seed(seed)
    prep = make_prepared("images", n=30, size=size)
    cfg = load_config(None, overrides(name, extra))
    variant = registry.build(cfg, data_spec(prep), "cpu")
    batches = DeviceBatches(prep, BATCH, "cpu", seed)
    batches.batches_per_step = variant.batches_per_step
    return variant, batches


def params_of(variant, generator_side: bool) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": p.detach().clone() for k, net in variant.nets.items()
            if k.startswith("g") == generator_side for n, p in net.named_parameters()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in before if not torch.equal(before[k], after[k])]


# --------------------------------------------------------------------------- gradient penalty

def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1 * 8 * 8, generator=g)
    w = w / w.norm()
    real, fake = torch.randn(5, 1, 8, 8, generator=g), torch.randn(5, 1, 8, 8, generator=g)
    assert losses.gradient_penalty(lambda x: x.flatten(1) @ w, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    # A norm-2 weight is penalised by exactly (2 - 1)^2: the test can tell.
    assert losses.gradient_penalty(lambda x: x.flatten(1) @ (2 * w), real, fake).item() == pytest.approx(1.0, rel=1e-5)


def test_gradient_penalty_mixes_per_sample_and_takes_per_sample_norms():
    seen = []
    scale = torch.tensor([1.0, 2.0, 3.0, 4.0])  # sample i's gradient has norm scale[i]
    w = torch.ones(2 * 4 * 4) / math.sqrt(2 * 4 * 4)

    def critic(x):
        seen.append(x.detach().clone())
        return scale * (x.flatten(1) @ w)

    real = torch.ones(4, 2, 4, 4)
    fake = -torch.ones(4, 2, 4, 4)
    fake[0] = real[0]  # one pair with real == fake: its interpolate is that image, whatever eps
    torch.manual_seed(0)
    gp = losses.gradient_penalty(critic, real, fake)
    x_hat = seen[0]
    assert torch.equal(x_hat[0], real[0])
    per_sample = x_hat.flatten(1)
    assert torch.all(per_sample.std(1) == 0)  # one mixing weight per sample, not per pixel
    assert per_sample[1:, 0].unique().numel() == 3  # and a different one for each sample
    assert gp.item() == pytest.approx(((scale - 1) ** 2).mean().item(), rel=1e-5)


# --------------------------------------------------------------------------- WGAN

def test_critic_batches_split_into_fresh_chunks():
    batch = {"x": torch.arange(12.0).view(12, 1, 1, 1), "y": torch.arange(12)}
    parts = losses.critic_batches(batch, 3)
    assert [p["y"].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    with pytest.raises(ValueError, match="critic steps"):
        losses.critic_batches({"x": torch.zeros(2, 1)}, 3)


@pytest.mark.parametrize("name", VARIANTS)
def test_batches_per_step_is_n_critic_for_wgans(name):
    variant, batches = build(name)
    expected = TINY[name].get("n_critic", 1)
    assert variant.batches_per_step == expected
    assert batches.next()["x"].shape[0] == BATCH * expected


def test_wgan_clips_every_critic_parameter_after_every_critic_step():
    variant, batches = build("wgan")
    d, c = variant.nets["d"], variant.hp.clip
    assert max(p.abs().max().item() for p in d.parameters()) > c  # init is outside the box
    largest_at_forward = []
    d.register_forward_pre_hook(lambda m, _: largest_at_forward.append(
        max(p.abs().max().item() for p in m.parameters())))
    variant.d_step(batches.next())
    for p in d.parameters():
        assert p.min().item() >= -c and p.max().item() <= c
    # Two critic calls (real, fake) per critic step; from the second step on, the critic the
    # step sees is the clipped one, so clipping happened after every step, not once at the end.
    assert len(largest_at_forward) == 2 * variant.hp.n_critic
    assert all(v <= c for v in largest_at_forward[2:])


def test_wgan_gp_critic_has_no_batch_norm():
    variant, _ = build("wgan_gp")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in variant.nets["d"].modules())
    with pytest.raises(ConfigError, match="critic_norm"):
        registry.resolve(load_config(None, overrides("wgan_gp", {"critic_norm": "batch"})))


# --------------------------------------------------------------------------- BEGAN

@pytest.mark.parametrize("lambda_k", [0.001, 50.0])  # 50 drives k into both clamps
def test_began_k_stays_in_unit_interval_and_m_is_logged(lambda_k):
    variant, batches = build("began", extra={"lambda_k": lambda_k})
    ks = []
    for _ in range(6):
        out = variant.train_step(batches.next())
        assert out["k"].device == variant.device and not out["k"].requires_grad
        assert torch.isfinite(out["M"]) and out["M"].item() >= 0
        ks.append(out["k"].item())
    assert all(0.0 <= k <= 1.0 for k in ks)
    assert any(k > 0 for k in ks)  # k moved from k_0 = 0


def test_began_k_update_follows_the_paper():
    variant, _ = build("began", extra={"gamma": 0.5, "lambda_k": 0.1})
    variant.k = torch.tensor(0.2)
    m = variant.update_k(torch.tensor(0.4), torch.tensor(0.1))  # gamma L(x) - L(G(z)) = 0.1
    assert variant.k.item() == pytest.approx(0.21)
    assert m.item() == pytest.approx(0.5)


def test_began_lr_halves_on_schedule_down_to_the_floor():
    variant, batches = build("began", extra={"lr": 1e-3, "lr_halve_every": 2, "lr_floor": 3e-4})
    lrs = []
    for _ in range(6):
        variant.train_step(batches.next())
        lrs.append([opt.param_groups[0]["lr"] for opt in variant.optims.values()])
    assert [lr[0] for lr in lrs] == pytest.approx([1e-3, 5e-4, 5e-4, 3e-4, 3e-4, 3e-4])
    assert all(g == d for g, d in lrs)  # G and D follow the same schedule
    constant, batches = build("began", extra={"lr": 1e-3, "lr_halve_every": 0})
    constant.train_step(batches.next())
    assert not constant.schedulers
    assert constant.optims["g"].param_groups[0]["lr"] == 1e-3


# --------------------------------------------------------------------------- InfoGAN

def test_infogan_information_loss_reaches_g_and_q():
    variant, _ = build("infogan")
    assert (variant.n_cat, variant.n_cont) == (10, 2)
    g, d, q = variant.nets["g"], variant.nets["d"], variant.nets["q"]
    fake, cat, cont = variant._fake(BATCH)
    variant._info(d.features(fake), cat, cont).backward()
    for net in (g, q):
        grads = [p.grad for p in net.parameters()]
        assert all(gr is not None for gr in grads)
        assert sum(gr.abs().sum().item() for gr in grads) > 0


def test_infogan_steps_train_q_with_d_and_g_with_the_information_term():
    variant, batches = build("infogan")
    batch = batches.next()
    q_before = {n: p.detach().clone() for n, p in variant.nets["q"].named_parameters()}
    out = variant.d_step(batch)
    assert all(not torch.equal(q_before[n], p) for n, p in variant.nets["q"].named_parameters())
    assert torch.isfinite(out["loss_info"])
    # Same G step without the information term gives another update: L_I reaches G.
    state = variant.state_dict()
    torch.manual_seed(1)
    variant.g_step(batch)
    g_with = [p.detach().clone() for p in variant.nets["g"].parameters()]
    variant.load_state_dict(state)
    variant.hp = variant.hp.model_copy(update={"lambda_cat": 0.0, "lambda_cont": 0.0})
    torch.manual_seed(1)
    variant.g_step(batch)
    g_without = list(variant.nets["g"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g_with, g_without, strict=True))


def test_infogan_codes_are_applied_to_every_sample():
    variant, _ = build("infogan")
    variant.eval()
    n = 7
    out = variant.sample(n, torch.Generator().manual_seed(3), codes={"cat": 4, "c2": 0.5})
    # Rebuild G's input from the same stream: z, then the codes, then the given ones applied.
    gen = torch.Generator().manual_seed(3)
    z = variant.noise(n, variant.hp.z_dim, gen)
    cat, cont = variant.draw_codes(n, gen)
    cat, cont = variant.apply_codes(cat, cont, {"cat": 4, "c2": 0.5})
    assert cat.tolist() == [4] * n and cont[:, 1].tolist() == [0.5] * n
    assert cont[:, 0].unique().numel() == n  # c1 was not given: drawn per sample
    with torch.no_grad():
        assert torch.equal(out, variant.nets["g"](variant.latent(z, cat, cont)))
    # Walking one code keeps z and the other codes: only the walked factor differs.
    other = variant.sample(n, torch.Generator().manual_seed(3), codes={"cat": 5, "c2": 0.5})
    assert not torch.equal(out, other)
    with pytest.raises(ConfigError, match="unknown code 'c9'"):
        variant.sample(2, torch.Generator(), codes={"c9": 1.0})
    with pytest.raises(ConfigError, match="0..9"):
        variant.sample(2, torch.Generator(), codes={"cat": 10})


# --------------------------------------------------------------------------- LSGAN

@pytest.mark.parametrize("a,b,c", [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)])
def test_ls_losses_vanish_at_their_targets(a, b, c):
    full = lambda v: torch.full((5,), v)  # noqa: E731
    assert losses.d_loss("ls", full(b), full(a), a=a, b=b).item() == 0.0
    assert losses.g_loss("ls", full(c), c=c).item() == 0.0
    assert losses.d_loss("ls", full(a), full(b), a=a, b=b).item() > 0


class ConstantCritic(nn.Module):
    """Outputs `value` for every sample (a zero-weighted parameter keeps autograd happy)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.w * x.flatten(1).mean(1) + self.value


def test_lsgan_uses_the_configured_targets():
    variant, batches = build("lsgan", extra={"a": 0.3, "b": 0.3, "c": 0.3})
    variant.nets["d"] = ConstantCritic(0.3)
    variant.optims["d"] = torch.optim.SGD(variant.nets["d"].parameters(), lr=0.1)
    assert variant.d_step(batches.next())["loss_d"].item() == 0.0
    assert variant.g_step(batches.next())["loss_g"].item() == 0.0
    variant.nets["d"].value = 1.3
    assert variant.d_step(batches.next())["loss_d"].item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- CGAN

def test_cgan_sample_uses_given_labels_and_draws_the_rest_from_the_generator():
    variant, _ = build("cgan")
    variant.eval()
    labels = torch.tensor([3, 3, 7, 0, 9])
    out = variant.sample(5, torch.Generator().manual_seed(1), labels=labels)
    z = torch.rand(5, variant.hp.z_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1  # the paper's uniform z
    with torch.no_grad():
        assert torch.equal(out, variant.nets["g"](z, labels))
        assert not torch.equal(out, variant.nets["g"](z, torch.tensor([1, 1, 1, 1, 1])))
    rng = torch.get_rng_state()
    a = variant.sample(5, torch.Generator().manual_seed(2))
    b = variant.sample(5, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(rng, torch.get_rng_state())
    with pytest.raises(ConfigError, match="0..9"):
        variant.sample(2, torch.Generator(), labels=torch.tensor([0, 10]))


# --------------------------------------------------------------------------- every variant

@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("name,extra", CASES)
def test_each_sub_step_updates_only_its_own_player(name, extra, size):
    variant, batches = build(name, size=size, extra=extra)
    for _ in range(2):
        batch = batches.next()
        g0, d0 = params_of(variant, True), params_of(variant, False)
        out_d = variant.d_step(batch)
        g1, d1 = params_of(variant, True), params_of(variant, False)
        assert changed(g0, g1) == [], "the D step changed G"
        assert changed(d0, d1), "the D step left D as it was"
        out_g = variant.g_step(batch)
        g2, d2 = params_of(variant, True), params_of(variant, False)
        assert changed(d1, d2) == [], "the G step changed D"
        assert changed(g1, g2), "the G step left G as it was"
        for v in (*out_d.values(), *out_g.values()):
            assert torch.isfinite(v).all() and not v.requires_grad
    out = variant.train_step(batches.next())
    assert {"loss_d", "loss_g"} <= set(out)
    assert all(torch.isfinite(v).all() and not v.requires_grad for v in out.values())


@pytest.mark.parametrize("name,extra", CASES)
def test_sample_shape_range_and_reproducibility(name, extra):
    variant, batches = build(name, size=32, extra=extra)
    variant.train_step(batches.next())
    variant.eval()
    rng = torch.get_rng_state()
    a = variant.sample(5, torch.Generator().manual_seed(7))
    b = variant.sample(5, torch.Generator().manual_seed(7))
    assert torch.equal(rng, torch.get_rng_state()), "sampling touched the global RNG"
    assert a.shape == (5, 1, 32, 32)
    assert a.min().item() >= -1 and a.max().item() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, variant.sample(5, torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("name,extra", CASES)
def test_state_dict_round_trip_gives_identical_samples(name, extra):
    variant, batches = build(name, seed=0, extra=extra)
    for _ in range(2):
        variant.train_step(batches.next())
    state = variant.state_dict()
    restored, _ = build(name, seed=1, extra=extra)  # different init: everything must come from the state
    restored.load_state_dict(state)
    for v in (variant, restored):
        v.eval()
    assert torch.equal(variant.sample(4, torch.Generator().manual_seed(5)),
                       restored.sample(4, torch.Generator().manual_seed(5)))
    assert all(torch.equal(torch.as_tensor(variant.extra_state()[k]), torch.as_tensor(v))
               for k, v in restored.extra_state().items())


@pytest.mark.parametrize("name", VARIANTS)
def test_trains_through_the_loop_and_checkpoints(name, in_tmp):
    prep = make_prepared("images", n=30, size=16)
    cfg = load_config(None, overrides(name) + ["train.steps=2", "train.batch_size=4", "train.progress=false",
                                               "train.log_every=1", "tracking.enabled=false"])
    result = train_loop(cfg, prep)
    assert result.steps == 2 and result.checkpoint.exists()
    assert all(math.isfinite(v) for row in result.history for v in row.values())
    # weights_only load (what resume and `ganzoo sample` do) accepts the variant's extra state.
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt["variant"] == name


def test_infogan_paper_mnist_nets_share_d_trunk_with_q_and_refuse_odd_sizes():
    variant, _ = build("infogan", size=28, extra={"arch": "mnist"})
    g, d, q = variant.nets["g"], variant.nets["d"], variant.nets["q"]
    assert [m.out_features for m in g.fc if isinstance(m, nn.Linear)] == [1024, 128 * 7 * 7]
    fake, cat, cont = variant._fake(BATCH)
    assert fake.shape == (BATCH, 1, 28, 28)
    feats = d.features(fake)
    assert feats.shape == (BATCH, 1024) and d(fake).shape == (BATCH,)
    variant._info(feats, cat, cont).backward()  # L_I reaches G and Q through the shared trunk
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for net in (g, q) for p in net.parameters())
    with pytest.raises(ConfigError, match=r"model.infogan.arch=mnist needs an image size divisible by 4, got 30"):
        build("infogan", size=30, extra={"arch": "mnist"})


def test_infogan_dcgan_q_head_keeps_its_checkpoint_keys():
    variant, _ = build("infogan")
    assert list(variant.nets["q"].state_dict())[:2] == ["net.0.weight", "net.2.weight"]


def test_infogan_noise_is_uniform_like_the_reference_code():
    variant, _ = build("infogan")
    z = variant.noise(4096, variant.hp.z_dim, torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1
    assert abs(float(z.var()) - 1 / 3) < 0.02  # Uniform(-1, 1), not N(0, 1)

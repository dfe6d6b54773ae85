"""The loop, checkpoints and resume, parametrized over every registered variant."""

import numpy as np
import pytest
import torch

from ganzoo import sampling
from ganzoo.config import load_config
from ganzoo.errors import ConfigError
from ganzoo.training.checkpoint import load_variant, read_checkpoint
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared

TINY = {  # small widths so one step of every variant takes well under a second on CPU
    "gan": ["model.gan.hidden=16"],
    "dcgan": ["model.dcgan.ngf=8", "model.dcgan.ndf=8"],
}


def tiny_cfg(variant, steps=2, extra=()):
    cls = registry.get_variant(variant)
    widths = TINY.get(variant, [])
    for key in ("ngf", "ndf", "hidden"):
        if key in cls.HParams.model_fields and not any(f".{key}=" in w for w in widths):
            widths = [*widths, f"model.{variant}.{key}=8"]
    return load_config(None, [f"variant={variant}", f"train.steps={steps}", "train.batch_size=4",
                              "train.log_every=1", "train.checkpoint_every=100", "train.progress=false",
                              "tracking.enabled=false", *widths, *extra])


def prepared_for(variant, size=32):
    kind = registry.get_variant(variant).data_kind
    return make_prepared({"labelled": "images"}.get(kind, kind), n=16, size=size)


@pytest.mark.parametrize("variant", registry.names())
def test_every_variant_trains_checkpoints_and_reloads(variant, in_tmp):
    cfg = tiny_cfg(variant)
    result = train_loop(cfg, prepared_for(variant))
    assert result.steps == 2 and result.checkpoint.exists()
    losses = result.history[-1]
    assert all(np.isfinite(v) for k, v in losses.items() if k != "step"), losses
    assert (in_tmp / "metrics" / variant / "losses.csv").read_text().startswith("step,")
    # The checkpoint alone rebuilds the variant: config, data spec and weights are inside.
    ckpt = read_checkpoint(result.checkpoint)
    assert ckpt["step"] == 2 and ckpt["config"]["variant"] == variant
    assert set(ckpt["config"]["model"]) == {variant}
    loaded, cfg2, _ = load_variant(result.checkpoint)
    assert cfg2.model == registry.resolve(cfg).model
    if not loaded.translates:
        a = sampling.generate(loaded, 3, seed=5)
        b = sampling.generate(loaded, 3, seed=5)
        assert a.shape[0] == 3 and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1


def test_resume_continues_exactly(in_tmp):
    """Train 6 steps straight vs 3 + resume 3: identical weights, history and sampler state."""
    prep = make_prepared(n=16, size=16)
    full = train_loop(tiny_cfg("dcgan", steps=6), prep)
    straight = read_checkpoint(full.checkpoint)
    half = train_loop(tiny_cfg("dcgan", steps=3, extra=["train.out_dir=ck2", "train.metrics_dir=m2"]), prep)
    assert half.steps == 3
    rest = train_loop(tiny_cfg("dcgan", steps=6, extra=["train.out_dir=ck2", "train.metrics_dir=m2"]), prep,
                      resume="yes")
    assert rest.resumed_from == 3
    resumed = read_checkpoint(rest.checkpoint)
    for net in straight["state"]["nets"]:
        for k, v in straight["state"]["nets"][net].items():
            assert torch.equal(v, resumed["state"]["nets"][net][k]), (net, k)
    assert straight["history"] == resumed["history"]


def test_resume_refuses_incompatible_and_auto_starts_fresh(in_tmp, capsys):
    prep = make_prepared(n=16, size=16)
    train_loop(tiny_cfg("dcgan", steps=2), prep)
    other = tiny_cfg("dcgan", steps=4, extra=["seed=9"])
    with pytest.raises(ConfigError, match="seed differs"):
        train_loop(other, prep, resume="yes")
    assert train_loop(other, prep, resume="auto").resumed_from == 0
    assert "starting fresh" in capsys.readouterr().out


def test_resume_accepts_a_checkpoint_from_before_a_hyper_parameter_was_added(in_tmp):
    """model.infogan.g_steps and q_norm came later: a checkpoint without them trained one G update
    per D update (HParams.absent_means, whatever today's default) and q_norm's default."""
    prep = make_prepared(n=16, size=16)
    one = ["model.infogan.g_steps=1"]
    first = train_loop(tiny_cfg("infogan", steps=2, extra=one), prep)
    ckpt = torch.load(first.checkpoint, weights_only=True)
    for key in ("g_steps", "q_norm"):
        del ckpt["config"]["model"]["infogan"][key]
    torch.save(ckpt, first.checkpoint)
    assert load_variant(first.checkpoint)[0].hp.g_steps == 1
    with pytest.raises(ConfigError, match="model differs"):
        train_loop(tiny_cfg("infogan", steps=4, extra=["model.infogan.g_steps=2"]), prep, resume="yes")
    assert train_loop(tiny_cfg("infogan", steps=4, extra=one), prep, resume="yes").resumed_from == 2


@pytest.mark.parametrize("config", [[1], {"variant": [1], "model": {}}, {"variant": "infogan", "model": [1]},
                                    {"variant": "nope", "model": {}}, {"variant": "infogan", "model": {"infogan": 3}}])
def test_a_damaged_checkpoint_config_is_left_for_validation_to_name(config):
    assert registry.as_trained(config) is config


def test_an_infogan_checkpoint_from_before_arch_loads_its_dcgan_nets(in_tmp):
    """model.infogan.arch came later, when the DCGAN nets were the only ones; today's default is
    the paper's MNIST nets, so a checkpoint without arch must still load the nets it holds."""
    prep = make_prepared(n=16, size=16)
    first = train_loop(tiny_cfg("infogan", steps=2, extra=["model.infogan.arch=dcgan"]), prep)
    ckpt = torch.load(first.checkpoint, weights_only=True)
    del ckpt["config"]["model"]["infogan"]["arch"]
    torch.save(ckpt, first.checkpoint)
    variant, _, _ = load_variant(first.checkpoint)
    assert variant.hp.arch == "dcgan" and type(variant.nets["g"]).__name__ == "DCGANGenerator"
    assert train_loop(tiny_cfg("infogan", steps=4), prep, resume="yes").resumed_from == 2


def test_resume_without_checkpoint_is_a_clear_error(in_tmp):
    with pytest.raises(ConfigError, match="no checkpoint"):
        train_loop(tiny_cfg("dcgan"), make_prepared(n=16, size=16), resume="yes")


def test_variant_data_mismatch_is_a_clear_error(in_tmp):
    with pytest.raises(ConfigError, match="needs paired data"):
        train_loop(tiny_cfg("pix2pix"), make_prepared(n=16, size=32))

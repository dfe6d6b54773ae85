"""The house rules issue 15 settled: one user-error base, config resolved once, a checkpoint format
that is checked on load, front ends that only parse and print."""

from __future__ import annotations

import pytest
import torch

from ganzoo import cli, stages
from ganzoo.config import load_config
from ganzoo.errors import ConfigError, DataError, GanzooError
from ganzoo.evaluation.classifier import ClassifierError
from ganzoo.evaluation.features import FeatureError
from ganzoo.training.checkpoint import FORMAT_VERSION, read_checkpoint
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared


def test_every_user_error_is_a_ganzoo_error():
    for cls in (ConfigError, DataError, ClassifierError, FeatureError):
        assert issubclass(cls, GanzooError)


def test_resolving_twice_is_free_and_a_variant_switch_resolves_again():
    cfg = load_config(None, ["variant=pix2pix"])
    once = registry.resolve(cfg)
    assert registry.resolve(once) is once
    assert once.data.source == "digits_paired" and set(once.model) == {"pix2pix"}
    other = registry.resolve(once.model_copy(update={"variant": "dcgan"}))
    assert other is not once and set(other.model) == {"dcgan"}


def _tiny_checkpoint():
    cfg = load_config(None, ["variant=gan", "model.gan.hidden=8", "model.gan.z_dim=4", "train.steps=1",
                             "train.batch_size=4", "train.progress=false", "tracking.enabled=false"])
    return train_loop(cfg, make_prepared("images", n=8, size=8)).checkpoint


def test_checkpoint_format_version_is_checked(in_tmp):
    path = _tiny_checkpoint()
    assert read_checkpoint(path)["format_version"] == FORMAT_VERSION
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, path)
    with pytest.raises(ConfigError, match=rf"format version {FORMAT_VERSION + 1}.*upgrade ganzoo"):
        read_checkpoint(path)


def test_sample_stage_checks_n_and_writes(in_tmp):
    path = _tiny_checkpoint()
    with pytest.raises(ConfigError, match="--n 0"):
        stages.sample(path, 0, in_tmp / "x.npz")
    done = stages.sample(path, 3, in_tmp / "x.npz", seed=1)
    assert done["n"] == 3 and (in_tmp / "x.npz").exists()
    with pytest.raises(ConfigError, match="takes no --labels"):
        stages.sample(path, 2, in_tmp / "y.npz", labels="1")


def test_cli_prints_one_line_and_exits_2_for_any_user_error(in_tmp, capsys):
    assert cli.main(["sample", str(in_tmp / "missing.pt"), "--out", "x.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganzoo: error:") and "\n" not in err and "missing.pt" in err


def test_variants_command_describes_every_variant(capsys):
    assert cli.main(["variants"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(registry.names())
    for line, name in zip(lines, registry.names(), strict=True):
        parts = line.split(maxsplit=2)
        assert parts[0] == name and len(parts) == 3 and parts[2] == registry.get_variant(name).description

"""Issue 20, bad values: non-finite floats, betas and seeds out of range, a directory or a binary
file as --params. Each is one line naming the key (or file) and exit code 2, never a traceback."""

import pytest

from ganzoo.cli import main
from ganzoo.config import MAX_SEED, load_config
from ganzoo.errors import ConfigError
from ganzoo.variants import registry


@pytest.mark.parametrize("override, culprit", [
    ("train.lr=.inf", "train.lr"),
    ("train.lr=1e400", "train.lr"),  # YAML reads it as text, pydantic as inf
    ("train.lr_g=.nan", "train.lr_g"),
    ("train.lr_d=-.inf", "train.lr_d"),
    ("seed=1e20", "seed"),
    ("seed=100000000000000000000", "seed"),
    (f"seed={MAX_SEED + 1}", "seed"),
    ("seed=-1", "seed"),
    ("eval.seed=1e20", "eval.seed"),
])
def test_non_finite_and_out_of_range_values_name_the_key(override, culprit):
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override, culprit", [
    ("model.dcgan.betas=[2, 3]", "model.dcgan.betas"),
    ("model.dcgan.betas=[0.5, 1.0]", "model.dcgan.betas"),
    ("model.dcgan.betas=[-0.1, 0.9]", "model.dcgan.betas"),
    ("model.wgan_gp.betas=[0.0, 1.5]", "model.wgan_gp.betas"),  # a variant that re-declares betas
    ("model.dcgan.betas=[0.5, .nan]", "model.dcgan.betas"),
    ("model.dcgan.lr=.inf", "model.dcgan.lr"),
    ("model.began.gamma=.nan", "model.began.gamma"),
    ("model.lsgan.a=.inf", "model.lsgan.a"),  # a float without bounds
])
def test_variant_floats_are_finite_and_betas_in_unit_interval(override, culprit):
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.")):
        registry.resolve(load_config(None, [override]))


def test_edge_values_still_pass():
    cfg = registry.resolve(load_config(None, [f"seed={MAX_SEED}", "model.dcgan.betas=[0.0, 0.999]",
                                              "model.wgan_gp.betas=[0, 0.9]"]))
    assert cfg.seed == MAX_SEED and list(cfg.model["dcgan"]["betas"]) == [0.0, 0.999]


@pytest.mark.parametrize("override", ["train.lr=.inf", "seed=1e20", "model.dcgan.betas=[2,3]"])
def test_cli_reports_bad_values_in_one_line(in_tmp, capsys, override):
    assert main(["train", "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganzoo: error:") and override.split("=")[0] in err[0]


def test_directory_as_params_is_one_line(in_tmp, capsys):
    (in_tmp / "conf").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(in_tmp / "conf")
    assert main(["train", "--params", "conf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'conf' is a directory" in err[0]


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
                                     b"variant: \x00dcgan\n"])
def test_binary_file_as_params_is_one_line(in_tmp, capsys, content):
    (in_tmp / "weights.bin").write_bytes(content)
    assert main(["prepare", "--params", "weights.bin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights.bin" in err[0], err

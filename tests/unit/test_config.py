import pytest

from ganzoo.config import flatten, load_config
from ganzoo.errors import ConfigError
from ganzoo.variants import registry


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_repo_params_file_is_valid_for_every_variant():
    cfg = load_config("params.yaml")
    assert cfg.variant == "dcgan" and cfg.data.source == "auto"
    assert registry.resolve(cfg).data.source == "digits"
    assert registry.resolve(cfg.model_copy(update={"variant": "pix2pix"})).data.source == "digits_paired"
    assert registry.resolve(cfg.model_copy(update={"variant": "discogan"})).data.source == "digits_unpaired"
    for name in registry.names():  # switching variant never meets another variant's keys
        registry.resolve(cfg.model_copy(update={"variant": name}))


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    p = write(tmp_path, "train:\n  stpes: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.stpes" in msg and "'steps'" in msg and "batch_size" in msg


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(write(tmp_path, "trian: {}\n"))


@pytest.mark.parametrize("override, culprit", [
    ("train.lr=-1", "train.lr"),
    ("train.batch_size=0", "train.batch_size"),
    ("data.image_size=30", "data.image_size"),
    ("train.steps=abc", "train.steps"),
    ("train.device=gpu", "train.device"),
    ("data.source=imagenet", "data.source"),
])
def test_bad_values_are_rejected_naming_the_key(override, culprit):
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.")):
        load_config(None, [override])


def test_dotted_overrides_parse_yaml_scalars():
    cfg = load_config("params.yaml", ["train.lr=1e-4", "variant=wgan_gp", "tracking.enabled=false",
                                     "model.wgan_gp.betas=[0.0, 0.9]"])
    assert cfg.train.lr == 1e-4 and cfg.variant == "wgan_gp" and cfg.tracking.enabled is False
    assert cfg.model["wgan_gp"]["betas"] == [0.0, 0.9]


def test_override_without_equals_is_a_clear_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["train.lr"])


def test_missing_params_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")


def test_model_section_validated_against_variant_hparams():
    cfg = load_config(None, ["variant=dcgan", "model.dcgan.ngf=16", "model.dcgan.zdim=3"])
    with pytest.raises(ConfigError, match="model.dcgan.zdim.*z_dim"):
        registry.resolve(cfg)
    with pytest.raises(ConfigError, match="model.dcgna: not a variant.*dcgan"):
        registry.resolve(load_config(None, ["model.dcgna.ngf=16"]))
    with pytest.raises(ConfigError, match=r"model\.gan\.hidden = -1"):  # unselected sections are checked too
        registry.resolve(load_config(None, ["variant=dcgan", "model.gan.hidden=-1"]))


def test_resolve_fills_variant_defaults():
    cfg = registry.resolve(load_config(None, ["variant=dcgan"]))
    hp = cfg.model["dcgan"]
    assert hp["z_dim"] == 100 and hp["lr"] == 2e-4 and list(hp["betas"]) == [0.5, 0.999]


def test_unknown_variant_suggests():
    with pytest.raises(ConfigError, match="dcgan"):
        registry.get_variant("dcgam")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_bare_off_from_yaml_means_off():
    cfg = load_config(None, ["train.amp=off", "train.channels_last=off"])
    assert cfg.train.amp == "off" and cfg.train.channels_last == "off"

"""The explicit variant registry: name -> "module:Class". Modules are imported on first use so
that `ganzoo --help` stays fast and a broken variant cannot break the others' import."""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from ganzoo.config import Config, suggest
from ganzoo.data import jitter
from ganzoo.errors import ConfigError
from ganzoo.variants.base import DataSpec, Variant

REGISTRY: dict[str, str] = {
    "gan": "ganzoo.variants.gan:GAN",
    "dcgan": "ganzoo.variants.dcgan:DCGAN",
    "cgan": "ganzoo.variants.cgan:CGAN",
    "infogan": "ganzoo.variants.infogan:InfoGAN",
    "wgan": "ganzoo.variants.wgan:WGAN",
    "wgan_gp": "ganzoo.variants.wgan_gp:WGANGP",
    "lsgan": "ganzoo.variants.lsgan:LSGAN",
    "began": "ganzoo.variants.began:BEGAN",
    "pix2pix": "ganzoo.variants.pix2pix:Pix2Pix",
    "cyclegan": "ganzoo.variants.cyclegan:CycleGAN",
    "discogan": "ganzoo.variants.discogan:DiscoGAN",
}


def names() -> list[str]:
    return list(REGISTRY)


def get_variant(name: str) -> type[Variant]:
    if name not in REGISTRY:
        hint = suggest(name, names()).replace("valid keys", "registered variants")
        raise ConfigError(f"variant {name!r} is unknown{hint}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def _validate_hparams(name: str, values: dict):
    cls = get_variant(name)
    if not isinstance(values, dict):
        raise ConfigError(f"model.{name} must be a mapping of {name}'s hyper-parameters, got {values!r}")
    try:
        return cls.HParams.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            raise ConfigError(f"model.{name}.{key} is not a hyper-parameter of variant {name!r}"
                              f"{suggest(key, list(cls.HParams.model_fields))}") from None
        raise ConfigError(f"model.{name}.{key} = {e.get('input')!r} is invalid: {e['msg']}") from None


def resolve(cfg: Config) -> Config:
    """`model:` holds one section per variant (`model.dcgan.ngf`), so switching `variant` never
    meets another variant's keys. Every section is validated (typos are caught even for variants
    not selected); the resolved config keeps only the selected variant's section, complete with
    its defaults, so checkpoints and MLflow hold everything and loading never needs params.yaml.
    Resolving a resolved config returns it as it is: the stages resolve once at their entry."""
    if cfg._resolved_for == cfg.variant:
        return cfg
    get_variant(cfg.variant)
    for name, values in cfg.model.items():
        if name not in REGISTRY:
            raise ConfigError(f"model.{name}: not a variant; model sections are named by variant"
                              f"{suggest(name, names()).replace('valid keys', 'variants')}")
        _validate_hparams(name, values or {})
    hp = _validate_hparams(cfg.variant, cfg.model.get(cfg.variant) or {})
    update: dict = {"model": {cfg.variant: hp.model_dump(mode="json")}}
    data: dict = {}
    if cfg.data.source == "auto":
        data["source"] = get_variant(cfg.variant).default_source
    if cfg.data.jitter is None:  # the papers' crop + flip, at the photo sizes it was made for
        data["jitter"] = get_variant(cfg.variant).paper_jitter and cfg.data.image_size >= jitter.AUTO_MIN_SIZE
    if data:
        update["data"] = cfg.data.model_copy(update=data)
    out = cfg.model_copy(update=update)
    out._resolved_for = cfg.variant
    return out


def as_trained(saved: dict) -> dict:
    """A checkpoint's config (a plain dict) with each hyper-parameter it predates set to the value
    it trained with (`HParams.absent_means`); other keys it lacks take today's defaults when resolved."""
    try:
        name = saved["variant"]
        section, absent = saved["model"][name], get_variant(name).HParams.absent_means
    except (TypeError, KeyError, IndexError, ConfigError):
        return saved  # a damaged config: validation names what is wrong
    if not isinstance(section, dict):
        return saved
    missing = {k: v for k, v in absent.items() if k not in section}
    if not missing:
        return saved
    return {**saved, "model": {**saved["model"], name: {**section, **missing}}}


def hparams(cfg: Config):
    return _validate_hparams(cfg.variant, cfg.model.get(cfg.variant) or {})


def build(cfg: Config, data: DataSpec, device) -> Variant:
    return get_variant(cfg.variant)(hparams(cfg), data, device, train_cfg=cfg.train)

"""The declared variant contract, checked on every registered variant and on the template of
docs/adding_a_variant.md registered at test time: what the loop, sampling, evaluation and serving
read from a variant is declared on `Variant`, and a variant keeps what it declares."""

from __future__ import annotations

import inspect

import pytest
import torch

from ganzoo.config import load_config
from ganzoo.evaluation.run import interpolation_frames
from ganzoo.training.loop import data_spec, train_loop
from ganzoo.variants import registry
from ganzoo.variants.base import Alternating, HParams, Variant
from tests.helpers import make_prepared

TEMPLATE = ("example", "tests.example_variant:Example")


@pytest.fixture(params=[*registry.names(), TEMPLATE[0]])
def name(request, monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, *TEMPLATE)
    return request.param


def small(name: str, extra=()):
    cls = registry.get_variant(name)
    widths = [f"model.{name}.{k}=8" for k in ("ngf", "ndf", "hidden", "n_filters", "h_dim", "q_hidden")
              if k in cls.HParams.model_fields]
    return load_config(None, [f"variant={name}", "train.steps=2", "train.batch_size=4", "train.log_every=1",
                              "train.progress=false", "tracking.enabled=false", *widths, *extra])


def prepared(cls, size=16):
    kind = {"labelled": "images"}.get(cls.data_kind, cls.data_kind)
    return make_prepared(kind, n=16, size=size)


def test_declarations(name):
    cls = registry.get_variant(name)
    assert cls.name == name and cls.description.strip() and "\n" not in cls.description
    assert issubclass(cls.HParams, HParams) and issubclass(cls, Variant)
    assert not inspect.isabstract(cls), f"{name} leaves abstract methods: {cls.__abstractmethods__}"
    assert cls.data_kind in ("images", "labelled", "paired", "unpaired")
    assert set(cls.directions) <= {"AtoB", "BtoA"} and bool(cls.directions) == cls.translates
    assert not (cls.translates and (cls.takes_labels or cls.takes_codes))
    if issubclass(cls, Alternating):  # the default train_step runs its paper's two sub-steps
        assert cls.train_step is Alternating.train_step or "train_step" in cls.__dict__


def test_generators_declare_their_latent_and_interpolate(name):
    cls = registry.get_variant(name)
    prep = prepared(cls)
    variant = registry.build(registry.resolve(small(name)), data_spec(prep), "cpu")
    if cls.translates:
        assert variant.latent_dim is None
        with pytest.raises(NotImplementedError):
            variant.sample(2)
        return
    assert variant.latent_dim and variant.latent_dim > 0
    frames = interpolation_frames(variant, seed=3, rows=3, steps=4)
    assert frames.shape == (3, 4, *prep.image_shape)
    assert torch.equal(frames, interpolation_frames(variant, seed=3, rows=3, steps=4))  # seeded
    assert not torch.equal(frames[:, 0], frames[:, -1]), "the walk does not move"
    z = variant.noise(2, variant.latent_dim, torch.Generator().manual_seed(0))
    assert torch.equal(variant.decode(z, generator=torch.Generator().manual_seed(1)),
                       variant.decode(z, generator=torch.Generator().manual_seed(1)))


def test_trains_two_steps_through_the_loop(name, in_tmp):
    cls = registry.get_variant(name)
    result = train_loop(small(name), prepared(cls))
    assert result.steps == 2 and result.checkpoint.exists()
    assert {"loss_d", "loss_g"} <= set(result.history[-1]) or cls.translates

"""The papers' training jitter: load at 286/256 x size, random crop, random flip, the same on both
halves of a pair, drawn from the sampler's seeded generator and replayed exactly on resume."""

from __future__ import annotations

import pytest
import torch

from ganzoo.config import Config, DataConfig
from ganzoo.data import jitter
from ganzoo.data.prepared import Prepared
from ganzoo.data.sampler import DeviceBatches
from ganzoo.data.stream import StreamBatches
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry
from tests.helpers import make_prepared


def test_load_sizes_keep_the_papers_ratio():
    assert [jitter.load_size(s) for s in (32, 64, 128, 256)] == [36, 72, 143, 286]


def test_crops_and_flips_are_windows_of_the_upsampled_image():
    """A horizontal ramp tells crops from flips: every output is a 16x16 window of the 18x18
    upsampled image, read left to right or (flipped) right to left."""
    ramp = torch.linspace(-1, 1, 16).expand(1, 1, 16, 16).repeat(64, 1, 1, 1).contiguous()
    params = jitter.draw(64, 16, torch.Generator().manual_seed(0), "cpu")
    out = jitter.apply(ramp, params)
    big = torch.nn.functional.interpolate(ramp[:1], size=(18, 18), mode="bicubic", align_corners=False).clamp(-1, 1)
    assert out.shape == ramp.shape
    assert params[0].max() <= 2 and params[1].max() <= 2 and set(params[2].tolist()) == {0, 1}
    for i in range(64):
        top, left, flip = params[:, i].tolist()
        window = big[0, 0, top:top + 16, left:left + 16]
        assert torch.equal(out[i, 0], window.flip(1) if flip else window), i
    flipped = params[2].bool()
    assert (out[flipped, 0, :, 0] > out[flipped, 0, :, -1]).all()  # a flipped ramp falls
    assert (out[~flipped, 0, :, 0] < out[~flipped, 0, :, -1]).all()


def paired_copies(n=12, size=16):
    """Paired data whose B is A: any difference after jitter means the halves were cropped apart."""
    base = make_prepared("paired", n=n, size=size)
    a = base.tensors["a"]
    return Prepared("paired", {"a": a, "b": a.clone(), "a_test": a[:2], "b_test": a[:2]}, base.manifest)


@pytest.mark.parametrize("sampler", [DeviceBatches, StreamBatches])
def test_both_halves_of_a_pair_get_the_same_crop_and_flip(sampler):
    prep = paired_copies()
    batches = sampler(prep, 8, "cpu", seed=0, jitter=True)
    plain = sampler(prep, 8, "cpu", seed=0, jitter=False)
    changed = False
    for _ in range(3):
        b, p = batches.next(), plain.next()
        assert torch.equal(b["a"], b["b"])
        changed |= not torch.equal(b["a"], p["a"])
    assert changed  # and the jitter did something


def test_unpaired_domains_are_jittered_independently():
    base = make_prepared("unpaired", n=12, size=16)
    a = base.tensors["a"]
    prep = Prepared("unpaired", {"a": a, "b": a.clone()}, base.manifest)
    b = DeviceBatches(prep, 8, "cpu", seed=0, jitter=True).next()
    assert not torch.equal(b["a"], b["b"])  # B is drawn (indices and jitter) apart from A


def test_jitter_off_draws_the_batches_of_before():
    """data.jitter=false adds no draws: the batches are those of a sampler without jitter."""
    prep = make_prepared("paired", n=12, size=16)
    g = torch.Generator().manual_seed(5 * 1000)
    b = DeviceBatches(prep, 4, "cpu", seed=5, jitter=False).next()
    idx = torch.randint(12, (4,), generator=g)
    assert torch.equal(b["a"], prep.tensors["a"][idx].float() / 127.5 - 1)


def test_resolved_jitter_is_the_papers_per_variant_at_photo_sizes():
    for variant, on in (("pix2pix", True), ("cyclegan", True), ("discogan", False), ("dcgan", False)):
        assert registry.resolve(Config(variant=variant, data=DataConfig(image_size=256))).data.jitter is on
        assert registry.resolve(Config(variant=variant, data=DataConfig(image_size=64))).data.jitter is False
    assert registry.resolve(Config(variant="pix2pix", data=DataConfig(image_size=128))).data.jitter is True
    off = Config(variant="pix2pix", data=DataConfig(jitter=False, image_size=256))
    assert registry.resolve(off).data.jitter is False
    on = Config(variant="cyclegan", data=DataConfig(jitter=True))
    assert registry.resolve(on).data.jitter is True  # asked for at 32 px: on


def test_jittered_training_resumes_exactly(in_tmp):
    """pix2pix with jitter: 2 + 2 steps == 4 steps, weights bit for bit."""
    prep = make_prepared("paired", n=8, size=16)

    def cfg(out, steps):
        return Config(variant="pix2pix", model={"pix2pix": {"ngf": 4, "ndf": 4}}, data={"jitter": True},
                      train={"steps": steps, "batch_size": 3, "device": "cpu", "progress": False,
                             "checkpoint_every": 2, "out_dir": out})

    full = train_loop(cfg("full", 4), prep)
    train_loop(cfg("split", 2), prep)
    resumed = train_loop(cfg("split", 4), prep, resume="yes")
    assert resumed.resumed_from == 2
    s1 = torch.load(full.checkpoint, weights_only=True)["state"]["nets"]
    s2 = torch.load(resumed.checkpoint, weights_only=True)["state"]["nets"]
    for net in s1:
        for k, v in s1[net].items():
            assert torch.equal(v, s2[net][k]), (net, k)

"""The embedded colour tasks from scikit-learn's two sample photos: what they hold, that they are
deterministic, and that each variant family prepares, trains a few steps and evaluates on them."""

from __future__ import annotations

import pytest
import torch

from ganzoo import stages
from ganzoo.config import DataConfig, load_config
from ganzoo.data import photos
from ganzoo.data.prepare import prepare_data


def cfg(tmp_path, source, **kw):
    return DataConfig(source=source, image_size=kw.pop("image_size", 16), prepared_dir=str(tmp_path), **kw)


def test_photos_are_labelled_colour_crops_with_a_held_out_split(tmp_path):
    prep = prepare_data(cfg(tmp_path, "photos"))
    t = prep.tensors
    assert t["x"].shape == (2 * photos.N_TRAIN, 3, 16, 16) and t["x_test"].shape == (2 * photos.N_TEST, 3, 16, 16)
    assert prep.manifest["classes"] == ["china", "flower"] and t["y"][:4].tolist() == [0, 1, 0, 1]
    assert torch.bincount(t["y_test"]).tolist() == [photos.N_TEST, photos.N_TEST]
    x = t["x"].float()
    assert (x[:, 0] - x[:, 2]).abs().mean() > 10  # colour, not grey in three channels
    limited = prepare_data(cfg(tmp_path / "l", "photos", limit=6))
    assert torch.equal(limited.tensors["x"], t["x"][:6])  # the first crops, both photos
    assert limited.tensors["x_test"].shape[0] == 2 * photos.N_TEST  # the test split is not limited


def test_crop_windows_do_not_depend_on_the_size_and_hashes_are_stable(tmp_path):
    small = prepare_data(cfg(tmp_path / "a", "photos", image_size=8, limit=8)).tensors["x"]
    big = prepare_data(cfg(tmp_path / "b", "photos", image_size=32, limit=8)).tensors["x"]
    shrunk = torch.nn.functional.interpolate(big.float(), size=(8, 8), mode="area")
    assert (shrunk - small.float()).abs().mean() < 12  # the same windows at two sizes
    h1 = prepare_data(cfg(tmp_path / "c", "photos_unpaired", limit=4)).manifest["content_hash"]
    h2 = prepare_data(cfg(tmp_path / "d", "photos_unpaired", limit=4)).manifest["content_hash"]
    assert h1 == h2


def test_held_out_crops_share_no_pixel_with_any_training_crop():
    for index, photo in enumerate(photos.sample_photos()):
        h, w = photo.shape[:2]
        seen = {split: torch.zeros(h, w, dtype=torch.bool) for split in ("train", "test")}
        for split, n in (("train", photos.N_TRAIN), ("test", photos.N_TEST)):
            boxes = photos.photo_boxes(photo, index, split, n)
            assert len(boxes) == n
            for left, top, right, bottom in boxes:
                assert 0 <= left < right <= w and 0 <= top < bottom <= h
                assert right - left == bottom - top >= photos.CROP_SIDES[0]  # square, at least 128 px
                seen[split][top:bottom, left:right] = True
        assert not (seen["train"] & seen["test"]).any()
        # Both splits reach across the photo (the subjects are in the middle): neither is one side only.
        for split in ("train", "test"):
            cols = seen[split].any(0).nonzero().flatten()
            assert cols.min() < w // 4 + 16 and cols.max() > 3 * w // 4 - 16
            assert seen[split].float().mean() > 0.4


def test_photos_paired_maps_edges_to_the_photo(tmp_path):
    prep = prepare_data(cfg(tmp_path, "photos_paired"))
    t = prep.tensors
    assert prep.kind == "paired" and t["a"].shape == (2 * photos.N_TRAIN, 1, 16, 16)
    assert t["b"].shape == (2 * photos.N_TRAIN, 3, 16, 16) and t["a_test"].shape[0] == 2 * photos.N_TEST
    assert torch.equal(t["a"], photos.edge_map(t["b"]))
    swapped = prepare_data(cfg(tmp_path / "s", "photos_paired", direction="BtoA", limit=4)).tensors
    assert swapped["a"].shape[1] == 3 and swapped["b"].shape[1] == 1  # BtoA: the photo is the input
    both = prepare_data(cfg(tmp_path / "c", "photos_paired", channels=3, limit=4)).tensors
    assert both["a"].shape[1] == both["b"].shape[1] == 3


def test_edge_map_is_white_on_flat_and_dark_on_a_step():
    flat = torch.full((1, 3, 12, 12), 90, dtype=torch.uint8)
    assert (photos.edge_map(flat) == 255).all()
    step = torch.zeros(1, 1, 12, 12, dtype=torch.uint8)
    step[..., 6:] = 200
    e = photos.edge_map(step)[0, 0]
    assert e[:, 5:7].max() < 60 and (e[:, :3] == 255).all() and (e[:, 9:] == 255).all()


def test_photos_unpaired_domains_are_the_two_photos(tmp_path):
    t = prepare_data(cfg(tmp_path, "photos_unpaired")).tensors
    assert t["a"].shape == t["b"].shape == (photos.N_TRAIN, 3, 16, 16)
    ra, rb = t["a"].float().mean((0, 2, 3)), t["b"].float().mean((0, 2, 3))
    assert rb[0] - rb[2] > ra[0] - ra[2]  # the flower photo is the redder domain


@pytest.mark.parametrize("variant, source, model", [
    ("dcgan", "photos", {"ngf": 8, "ndf": 8, "z_dim": 16}),
    ("pix2pix", "photos_paired", {"ngf": 4, "ndf": 4}),
    ("cyclegan", "photos_unpaired", {"ngf": 4, "ndf": 4, "n_blocks": 1, "pool_size": 4}),
])
def test_each_family_prepares_trains_and_evaluates_on_photos(variant, source, model, in_tmp):
    c = load_config(None, [f"variant={variant}", f"data.source={source}", "data.image_size=16", "data.limit=32",
                           "train.steps=3", "train.batch_size=4", "train.log_every=3", "train.progress=false",
                           "train.device=cpu", "tracking.enabled=false", "eval.n_samples=16", "eval.batch_size=16",
                           "eval.classifier_steps=3", "eval.kid_subset_size=8",
                           *(f"model.{variant}.{k}={v}" for k, v in model.items())])
    stages.prepare(c)
    result = stages.train(c)
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(v)) for v in result.history[-1].values())
    metrics = stages.evaluate(c)
    assert metrics["source"] == source
    if variant == "dcgan":  # two photo identities are too few classes to shape a feature space
        assert metrics["primary_metric"] == "fid_rotation" and "fid_classifier" not in metrics
        assert metrics["modes_covered"] in (1, 2)  # the photo classifier still judges the classes
    else:
        assert "l1" in metrics or "cycle_error_a" in metrics

"""KID in ganzoo's own feature spaces: the cubic kernel (x.y/d + 1)^3 assumes Inception-scale
features, so KID divides a SmallCNN space's features by their rms over the network's training
images. Without it, KID on the photo task was +-1e8 noise (issue 19)."""

from __future__ import annotations

import types

import pytest
import torch

from ganzoo.config import DataConfig
from ganzoo.data.prepare import prepare_data
from ganzoo.evaluation import build_features, compute_image_metrics, kid
from ganzoo.evaluation.metrics import extract


def gaussian(n: int, d: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_kid_with_a_scale_is_kid_of_the_divided_features():
    real, fake = gaussian(600, 16), gaussian(600, 16, shift=0.3, seed=1)
    plain = kid(real, fake, subset_size=200, subsets=10, seed=3)
    scaled = kid(40 * real, 40 * fake, subset_size=200, subsets=10, seed=3, scale=40.0)
    assert scaled == pytest.approx(plain, rel=1e-9)
    assert kid(40 * real, 40 * fake, subset_size=200, subsets=10, seed=3)[0] > 1e6 * plain[0]  # what it guards
    with pytest.raises(ValueError, match="scale"):
        kid(real, fake, scale=0.0)


def test_kid_in_the_photo_feature_space_is_near_zero_for_real_halves_and_large_without_one_photo(tmp_path):
    prep = prepare_data(DataConfig(source="photos", image_size=32, prepared_dir=str(tmp_path)))
    ev = types.SimpleNamespace(classifier_dir=str(tmp_path / "clf"), classifier_steps=150, inception_weights=None,
                               features="classifier")
    # The photo classifier's space, asked for by name (auto takes rotation for two classes): its
    # features are the largest (rms ~43 at 64 px), so its KID needs the scale most.
    extractor, space, info = build_features("classifier", prep, ev, "cpu")
    assert space == "classifier" and info["kid_feature_scale"] == extractor.kid_scale
    x, y = prep.tensors["x"], prep.tensors["y"]
    feats, _ = extract(extractor, x)
    # The scale is the rms of the features of the images the net learnt from (all 1024 here).
    assert float(feats.double().square().mean().sqrt()) == pytest.approx(extractor.kid_scale, rel=1e-4)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    a, b = feats[perm[:512]], feats[perm[512:]]
    same, _ = kid(a, b, subset_size=400, subsets=100, seed=0, scale=extractor.kid_scale)
    one_photo, _ = kid(a, feats[y == 0], subset_size=400, subsets=100, seed=0, scale=extractor.kid_scale)
    # Measured: |same| <= 0.08 over three splits (hundreds to thousands unscaled), one photo only 4-5.
    assert abs(same) < 0.3
    assert one_photo > 1.0 and one_photo > 10 * abs(same)
    # compute_image_metrics (what `ganzoo evaluate` runs) takes the extractor's scale by itself.
    m = compute_image_metrics(extractor, x[perm[:512]], x[perm[512:]], batch_size=512, suffix=space,
                              kid_subset_size=400, kid_subsets=100, seed=0)
    assert m["kid_classifier_mean"] == pytest.approx(same, rel=1e-6, abs=1e-9)
    assert all(torch.isfinite(torch.tensor(v)) for v in m.values())

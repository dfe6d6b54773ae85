"""Evaluation layer: metric sanity on known distributions, the cached digits classifier, sheets."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganzoo.data.images import save_grid
from ganzoo.data.prepared import Prepared, content_hash
from ganzoo.evaluation import (
    FeatureError,
    build_features,
    class_kl,
    class_rows,
    compute_image_metrics,
    fid,
    get_classifier,
    interpolation_latents,
    kid,
    mode_coverage,
    modes_covered,
    precision_recall,
    train_classifier,
)
from ganzoo.evaluation import classifier as clf_mod

CLASSIFIER_STEPS = 150  # ~0.98 held-out accuracy on digits in a few CPU seconds


def gaussian(n: int, d: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def eval_cfg(tmp_path, **kw):
    cfg = dict(classifier_dir=str(tmp_path / "classifier"), classifier_steps=CLASSIFIER_STEPS,
               inception_weights=None, features="classifier")
    cfg.update(kw)
    return types.SimpleNamespace(**cfg)


@pytest.fixture(scope="module")
def digits() -> Prepared:
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    tensors = {"x": x, "y": torch.tensor(d.target, dtype=torch.long)}
    manifest = {"classes": [str(i) for i in range(10)], "content_hash": content_hash(tensors)}
    return Prepared(kind="images", tensors=tensors, manifest=manifest)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cfg = eval_cfg(tmp_path_factory.mktemp("clf"))
    model, acc = get_classifier(digits, cfg, "cpu")
    return cfg, model, acc


# --------------------------------------------------------------------------- feature-space metrics

def test_identical_features_give_zero_fid_and_kid():
    a = gaussian(2000, 8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    mean, _ = kid(a, a, subset_size=500, subsets=20, seed=0)
    assert abs(mean) < 0.01  # unbiased estimator on independent subsets: noise around 0


def test_shifted_gaussian_fid_is_squared_mean_distance():
    d, shift = 8, 0.5
    real, fake = gaussian(20000, d, seed=1), gaussian(20000, d, shift, seed=2)
    assert fid(real, fake) == pytest.approx(d * shift**2, rel=0.05)  # ||mu||^2 = 2.0
    far, _ = kid(real, fake, subset_size=1000, subsets=10, seed=0)
    near, _ = kid(real, gaussian(20000, d, seed=3), subset_size=1000, subsets=10, seed=0)
    assert far > 10 * abs(near)


def test_precision_recall_identical_and_disjoint():
    a = gaussian(1500, 16)
    assert precision_recall(a, a, k=3) == (1.0, 1.0)
    assert precision_recall(a, gaussian(1500, 16, shift=100.0, seed=1), k=3) == (0.0, 0.0)


def test_precision_recall_detects_collapse():
    real = gaussian(2000, 4)
    collapsed = real[:20].repeat(50, 1) + 1e-3 * gaussian(1000, 4, seed=5)  # 20 modes only
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision > 0.9 and recall < 0.2


def test_mode_coverage_of_one_class_generator():
    one = torch.full((1000,), 7)
    assert modes_covered(one, 10) == 1
    assert mode_coverage(one, 10) == pytest.approx(0.1)
    assert mode_coverage(torch.arange(1000) % 10, 10) == 1.0
    rare = torch.cat([torch.arange(990) % 9, torch.full((10,), 9)])  # class 9 under 2%
    assert modes_covered(rare, 10) == 9


def test_class_kl():
    labels = torch.arange(1000) % 10
    assert class_kl(labels, labels.flip(0), 10) == pytest.approx(0.0, abs=1e-9)
    assert class_kl(torch.full((1000,), 3), labels, 10) == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=0.01)


# --------------------------------------------------------------------------- classifier

def test_classifier_on_digits_is_accurate_and_cached(digits, trained, monkeypatch):
    cfg, model, acc = trained
    assert acc >= 0.95
    path = clf_mod.classifier_path(digits, cfg)
    assert path.name == f"{digits.manifest['content_hash']}-{CLASSIFIER_STEPS}.pt" and path.is_file()

    def no_training(*a, **k):
        raise AssertionError("cached classifier was retrained")

    monkeypatch.setattr(clf_mod, "train_classifier", no_training)
    again, acc2 = get_classifier(digits, cfg, "cpu")
    assert acc2 == acc
    x = digits.tensors["x"][:64]
    assert torch.equal(again.features(x.float() / 127.5 - 1), model.features(x.float() / 127.5 - 1))
    assert model.features(x.float()).shape == (64, model.num_features)


def test_classifier_training_is_deterministic(digits):
    x, y = digits.tensors["x"][:300], digits.tensors["y"][:300]
    m1, a1 = train_classifier(x, y, 10, steps=5, seed=3)
    m2, a2 = train_classifier(x, y, 10, steps=5, seed=3)
    assert a1 == a2
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))


def test_classifier_handles_rgb_and_sizes():
    for size in (8, 128):
        m = clf_mod.SmallCNN(3, 4)
        assert m(torch.zeros(2, 3, size, size)).shape == (2, 4)


# --------------------------------------------------------------------------- features and driver

def test_missing_inception_weights_is_a_clear_error(digits, tmp_path):
    missing = tmp_path / "nope" / "inception.pth"
    with pytest.raises(FeatureError) as err:
        build_features("inception", digits, eval_cfg(tmp_path, inception_weights=str(missing)), "cpu")
    msg = str(err.value)
    assert str(missing) in msg and "eval.inception_weights" in msg and "\n" not in msg


def test_unlabelled_data_with_classifier_features_is_a_clear_error(tmp_path):
    prep = Prepared(kind="images", tensors={"x": torch.zeros(4, 1, 8, 8, dtype=torch.uint8)}, manifest={})
    with pytest.raises(FeatureError, match="eval.features=rotation"):
        build_features("classifier", prep, eval_cfg(tmp_path), "cpu")


def test_compute_image_metrics_is_deterministic_and_complete(digits, trained):
    cfg, _, acc = trained
    extractor, suffix, info = build_features("classifier", digits, cfg, "cpu")
    assert info["classifier_accuracy"] == acc and suffix == "classifier"
    real = digits.tensors["x"][:900]
    fake = digits.tensors["x"][900:1800].float() / 127.5 - 1  # a "perfect generator": held-apart real images
    kw = dict(batch_size=256, suffix=suffix, kid_subset_size=500, kid_subsets=20, seed=7)
    first = compute_image_metrics(extractor, real, fake, **kw)
    assert first == compute_image_metrics(extractor, real, fake, **kw)
    expected = {"fid_classifier", "kid_classifier_mean", "kid_classifier_std", "precision_classifier",
                "recall_classifier", "mode_coverage", "modes_covered", "class_kl"}
    assert set(first) == expected
    assert first["mode_coverage"] == 1.0 and first["class_kl"] < 0.05

    ones = digits.tensors["x"][digits.tensors["y"] == 1][:150]  # a collapsed generator
    collapsed = compute_image_metrics(extractor, real, ones, **kw)
    assert collapsed["modes_covered"] <= 2 and collapsed["class_kl"] > 1.0
    assert collapsed["fid_classifier"] > 5 * first["fid_classifier"]
    assert collapsed["recall_classifier"] < first["recall_classifier"]


# --------------------------------------------------------------------------- sheets

def test_save_grid_and_arrangements(tmp_path):
    imgs = torch.rand(10, 4, 1, 8, 8) * 2 - 1  # 10 classes x 4 samples
    flat, nrow = class_rows(imgs)
    assert flat.shape == (40, 1, 8, 8) and nrow == 4
    path = save_grid(flat, tmp_path / "sheet.png", nrow)
    with Image.open(path) as im:
        assert im.size == (4 * 10 + 2, 10 * 10 + 2) and im.mode == "L"

    rgb = save_grid(torch.rand(9, 3, 8, 8) * 2 - 1, tmp_path / "colour.png", 3)
    with Image.open(rgb) as im:
        assert im.size == (3 * 10 + 2, 3 * 10 + 2) and im.mode == "RGB"

    z = interpolation_latents(torch.randn(2, 16), torch.randn(2, 16), steps=5)
    assert z.shape == (10, 16)


# --------------------------------------------------------------------------- InfoGAN code accuracy

def test_matched_code_accuracy_scores_a_code_ignoring_generator_one_tenth():
    from ganzoo.evaluation.metrics import majority_code_purity, matched_code_accuracy

    codes = torch.arange(10).repeat_interleave(50)
    one_digit = torch.full_like(codes, 7)  # every code draws a 7
    assert matched_code_accuracy(codes, one_digit, 10, 10) == pytest.approx(0.1)
    assert majority_code_purity(codes, one_digit, 10, 10) == 1.0  # why the purity is not the paper's score


def test_matched_code_accuracy_of_a_permutation_is_one():
    from ganzoo.evaluation.metrics import matched_code_accuracy

    codes = torch.arange(10).repeat_interleave(30)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert matched_code_accuracy(codes, perm[codes], 10, 10) == 1.0


def test_matched_code_accuracy_on_a_hand_made_table():
    from ganzoo.evaluation.metrics import matched_code_accuracy

    # code 0: 8 x class 1, 2 x class 0; code 1: 6 x class 1, 4 x class 0. Majority would give
    # both codes class 1; the matching must send code 0 -> 1, code 1 -> 0: (8 + 4) / 20.
    codes = torch.tensor([0] * 10 + [1] * 10)
    classes = torch.tensor([1] * 8 + [0] * 2 + [1] * 6 + [0] * 4)
    assert matched_code_accuracy(codes, classes, 2, 2) == pytest.approx(12 / 20)
    with pytest.raises(ValueError):
        matched_code_accuracy(codes, classes + 5, 2, 2)


# --------------------------------------------------------------------------- reference parity, on features

def test_kid_and_fid_match_torch_fidelity_on_the_same_features():
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
    real, fake = gaussian(700, 32, seed=1), gaussian(600, 32, shift=0.3, seed=2) * 1.2
    mean, std = kid(real, fake, subset_size=250, subsets=15, seed=9)
    theirs = tf_kid.kid_features_to_metric(real, fake, kid_subsets=15, kid_subset_size=250, rng_seed=9,
                                           verbose=False)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
    stats = [tf_fid.fid_features_to_statistics(f) for f in (real, fake)]
    assert fid(real, fake) == pytest.approx(tf_fid.fid_statistics_to_metric(*stats, verbose=False)
                                            ["frechet_inception_distance"], rel=1e-9)


# --------------------------------------------------------------------------- one input pipeline

def test_generated_floats_are_quantised_like_real_images():
    from ganzoo.data.images import to_unit_range
    from ganzoo.evaluation.metrics import extract

    class Pixels(torch.nn.Module):
        num_features = 64

        def forward(self, x):
            return x.float().flatten(1)

    real = torch.randint(0, 256, (50, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    # A generator that reproduces the real images up to a third of a quantum: the same images once saved.
    fake = to_unit_range(real) + (torch.rand(real.shape, generator=torch.Generator().manual_seed(1)) - 0.5) / 200
    real_f, _ = extract(Pixels(), real)
    fake_f, _ = extract(Pixels(), fake.clamp(-1, 1))
    assert torch.equal(real_f, fake_f)
    assert fid(real_f, fake_f) == 0.0


# --------------------------------------------------------------------------- FID interval

def test_bootstrap_replicate_is_the_fid_of_the_resampled_set():
    from ganzoo.evaluation.metrics import _ResampledFid

    real, fake = gaussian(800, 12, seed=1), gaussian(500, 12, shift=0.2, seed=2)
    idx = torch.randint(500, (500,), generator=torch.Generator().manual_seed(3))
    exact = _ResampledFid(real, fake, torch.float64)
    assert exact(torch.bincount(idx, minlength=500)) == pytest.approx(fid(real, fake[idx]), rel=1e-9)
    assert exact(torch.ones(500, dtype=torch.long)) == pytest.approx(fid(real, fake), rel=1e-9)
    fast = _ResampledFid(real + 50, fake + 50)  # float32 covariances, features far from 0
    assert fast(torch.bincount(idx, minlength=500)) == pytest.approx(fid(real, fake[idx]), rel=1e-5)


def test_fid_interval_is_as_wide_as_the_spread_of_fresh_samples():
    from ganzoo.evaluation.metrics import fid_interval

    real = gaussian(2000, 8, seed=0)
    draw = iter(range(100, 1000))

    def generated():  # the same "generator", a fresh draw each time
        return gaussian(600, 8, shift=0.25, seed=next(draw)) * 1.1

    fresh = torch.tensor([fid(real, generated()) for _ in range(60)], dtype=torch.float64)
    spread = float(fresh.quantile(0.975) - fresh.quantile(0.025))
    fake = generated()
    low, high = fid_interval(real, fake, reps=100, seed=4)
    assert low < fid(real, fake) < high
    assert 0.6 * spread < high - low < 1.6 * spread
    assert (low, high) == fid_interval(real, fake, reps=100, seed=4)  # deterministic


def test_compute_image_metrics_adds_the_interval_only_when_asked(digits, trained):
    cfg, _, _ = trained
    extractor, suffix, _ = build_features("classifier", digits, cfg, "cpu")
    real, fake = digits.tensors["x"][:400], digits.tensors["x"][400:800]
    m = compute_image_metrics(extractor, real, fake, suffix=suffix, kid_subset_size=200, kid_subsets=5,
                              bootstrap=50)
    assert m["fid_classifier_ci_low"] <= m["fid_classifier"] <= m["fid_classifier_ci_high"]
    assert "fid_classifier_ci_low" not in compute_image_metrics(extractor, real, fake, suffix=suffix,
                                                                kid_subset_size=200, kid_subsets=5)


# --------------------------------------------------------------------------- PSNR as the literature defines it

def test_psnr_is_the_mean_of_per_image_psnr():
    from ganzoo.evaluation.translation import psnr_per_image

    target = torch.zeros(2, 1, 10, 10)
    out = target.clone()
    out[0] += 0.1  # MSE 0.01 -> 20 dB
    out[1] += 0.01  # MSE 0.0001 -> 40 dB
    per_image = psnr_per_image(out, target)
    assert per_image.tolist() == pytest.approx([20.0, 40.0])
    assert float(per_image.mean()) == pytest.approx(30.0)  # the pooled MSE (0.00505) would say 22.97 dB
    assert psnr_per_image(target, target).tolist() == [100.0, 100.0]  # exact copies: capped, not inf

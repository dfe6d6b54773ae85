"""`eval.features=inception` gives torch-fidelity's FID and KID (and so pytorch-fid's legacy
mode's) on the same images, to 1e-3 relative. No network here, so the weights file is built:
torch-fidelity's own Inception-v3 architecture with random values (He-scaled convolutions and
random batch-norm statistics, so activations neither vanish nor explode through 20 layers),
saved as a state dict and given to both ganzoo (`eval.inception_weights`) and torch-fidelity
(`feature_extractor_weights_path`). The images are grey 32x32 uint8 "real" ones and float
[-1, 1] "generated" ones: ganzoo quantises the generated set and repeats grey to RGB itself,
torch-fidelity is handed the uint8 RGB images that should come out of that."""

from __future__ import annotations

import types

import pytest
import torch

from ganzoo.data.images import to_uint8
from ganzoo.evaluation import build_features, compute_image_metrics
from ganzoo.evaluation.features import InceptionFeatures
from tests.helpers import make_prepared

pytestmark = pytest.mark.slow  # ~100 Inception-v3 forward passes at 299x299 on the CPU

N = 40  # images per set
SUBSET = 24  # KID subset size: below N, so the subsets (drawn alike by both) really differ


def random_inception_weights(path, seed: int = 0) -> None:
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    gen = torch.Generator().manual_seed(seed)
    load = fe.FeatureExtractorInceptionV3.load_state_dict
    fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, strict=True: None  # build, load nothing
    try:
        orig = fe.torch.load
        fe.torch.load = lambda *a, **k: {}
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    finally:
        fe.FeatureExtractorInceptionV3.load_state_dict = load
        fe.torch.load = orig
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("running_var"):
            v = 0.5 + torch.rand(t.shape, generator=gen)
        elif name.endswith("running_mean"):
            v = 0.1 * torch.randn(t.shape, generator=gen)
        elif name.endswith("num_batches_tracked"):
            v = t
        elif t.dim() == 4:  # conv: He scale keeps ReLU activations at unit size
            v = torch.randn(t.shape, generator=gen) * (2.0 / t[0].numel()) ** 0.5
        elif name.endswith("bn.weight"):
            v = 1 + 0.1 * torch.randn(t.shape, generator=gen)
        else:
            v = 0.1 * torch.randn(t.shape, generator=gen)
        state[name] = v.to(t.dtype)
    torch.save(state, path)


class _Uint8RGB(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images.expand(-1, 3, -1, -1).contiguous()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_inception_fid_and_kid_match_torch_fidelity(tmp_path):
    tf = pytest.importorskip("torch_fidelity")
    weights = tmp_path / "inception-random.pth"
    random_inception_weights(weights)

    prep = make_prepared(n=N, size=32, seed=1)
    real = prep.tensors["x"]
    # "Generated": a blurred, brightened copy of other images, as floats off the quantisation grid.
    other = make_prepared(n=N, size=32, seed=2).tensors["x"].float()
    fake = (torch.nn.functional.avg_pool2d(other, 3, 1, 1) / 127.5 - 0.8).clamp(-1, 1) + 1e-3

    cfg = types.SimpleNamespace(inception_weights=str(weights), classifier_dir=str(tmp_path), classifier_steps=1)
    extractor, space, _ = build_features("inception", prep, cfg, "cpu")
    assert space == "inception" and isinstance(extractor, InceptionFeatures)
    ours = compute_image_metrics(extractor, real, fake, batch_size=16, suffix=space, kid_subset_size=SUBSET,
                                 kid_subsets=10, seed=5)

    theirs = tf.calculate_metrics(input1=_Uint8RGB(real), input2=_Uint8RGB(to_uint8(fake)), fid=True, kid=True,
                                  kid_subset_size=SUBSET, kid_subsets=10, rng_seed=5, batch_size=16, cuda=False,
                                  feature_extractor="inception-v3-compat",
                                  feature_extractor_weights_path=str(weights), verbose=False, cache=False)
    assert theirs["frechet_inception_distance"] > 1e-3  # the two sets really differ in this space
    assert ours["fid_inception"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    assert ours["kid_inception_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3)
    assert theirs["kernel_inception_distance_std"] > 1e-3 * abs(theirs["kernel_inception_distance_mean"])
    assert ours["kid_inception_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)

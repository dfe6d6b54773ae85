"""Feature extractors in torchmetrics' custom-module contract: `module(images) -> (N, D)` float.

torchmetrics (FrechetInceptionDistance / KernelInceptionDistance with `feature=<nn.Module>`)
passes the images untouched to the module and reads `module.num_features` for the state size,
so both extractors here accept uint8 [0, 255] or float [-1, 1] NCHW images and expose it.

`InceptionFeatures` is the standard FID network, but only with weights already on disk: this
toolkit never downloads at evaluation time and never swaps in another network silently, so a
missing file is a `FeatureError` that names the path and the setting to change.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganzoo.data.images import as_unit_range, to_uint8
from ganzoo.data.prepared import Prepared
from ganzoo.errors import ConfigError
from ganzoo.evaluation.classifier import ClassifierError, SmallCNN, get_classifier

# torch-fidelity's FID Inception weights; torch.hub caches downloads under <hub>/checkpoints/.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


class FeatureError(ConfigError):
    """A user error about evaluation features (missing weights, package, labels); one line."""


class _FrozenExtractor(nn.Module):
    """Always in eval mode and without gradients, whatever the caller does with .train()."""

    def train(self, mode: bool = True) -> _FrozenExtractor:
        return super().train(False)


class ClassifierFeatures(_FrozenExtractor):
    """Penultimate embedding of the dataset's own classifier (see classifier.py)."""

    def __init__(self, classifier: SmallCNN):
        super().__init__()
        self.classifier = classifier
        self.num_features = int(classifier.num_features)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.classifier.parameters()).device
        x = x.to(dev)
        x = as_unit_range(x)
        return self.classifier.features(x).float()


def _torch_fidelity_available() -> bool:
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    return True


def inception_weights_path(eval_cfg) -> Path:
    """The file InceptionFeatures will load: eval.inception_weights, else torch hub's cache."""
    if getattr(eval_cfg, "inception_weights", None):
        return Path(eval_cfg.inception_weights).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


class InceptionFeatures(_FrozenExtractor):
    """2048-d pool3 features of the FID Inception-v3 (torchmetrics' NoTrainInceptionV3)."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        weights_path = Path(weights_path)
        need_pkg = "" if _torch_fidelity_available() else "; it also needs torch-fidelity: pip install torch-fidelity"
        if not weights_path.is_file():
            raise FeatureError(f"Inception weights not found at {weights_path}; put {INCEPTION_FILE} there or set "
                               f"eval.inception_weights=PATH to a copy, or use eval.features=classifier{need_pkg}")
        if need_pkg:
            raise FeatureError("eval.features=inception needs the torch-fidelity package, which is not installed: "
                               "pip install torch-fidelity (or use eval.features=classifier)")
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(weights_path))
        self.num_features = 2048
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dtype == torch.uint8 else to_uint8(x)  # the net wants uint8 RGB, resizes to 299 itself
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        dev = next(self.net.parameters()).device
        return self.net(x.to(dev).contiguous()).float()


def build_features(kind: str, prep: Prepared, eval_cfg, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, str, dict]:
    """-> (extractor, name suffix for metric keys, info for logging)."""
    if kind == "classifier":
        try:
            model, acc = get_classifier(prep, eval_cfg, device)
        except ClassifierError as err:
            raise FeatureError(str(err)) from None
        ext = ClassifierFeatures(model)
        return ext, "classifier", {"features": "classifier", "classifier_accuracy": acc,
                                   "feature_dim": ext.num_features}
    if kind == "inception":
        path = inception_weights_path(eval_cfg)
        inception = InceptionFeatures(path).to(device)
        return inception, "inception", {"features": "inception", "inception_weights": str(path),
                                        "feature_dim": inception.num_features}
    raise FeatureError(f"unknown eval.features {kind!r}; valid: classifier, inception")

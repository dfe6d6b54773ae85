"""Feature extractors in torchmetrics' custom-module contract: `module(images) -> (N, D)` float.

Every extractor accepts uint8 [0, 255] or float [-1, 1] NCHW images, exposes `num_features`,
and describes itself for the metric fingerprint (`describe()`: name, sha256 of its weights,
layer, dimension, how it resizes). The spaces, by `eval.features`:

- `classifier`: the penultimate embedding of a small CNN trained on the dataset's own labels;
- `rotation`: the same network trained to predict image rotation, for data without labels;
- `auto`: classifier when the data has labels of at least AUTO_MIN_CLASSES classes, rotation
  otherwise (never a network trained on other data: the metric key says which space it is,
  `fid_<space>`);
- `inception`: the standard FID Inception-v3 (torch-fidelity's network, pool3, 2048-d), only
  with its weights already on disk: this toolkit never downloads at evaluation time and never
  swaps in another network silently, so a missing file is a `FeatureError` naming the path.

KID's cubic kernel assumes Inception-scale features (see metrics.py), so every extractor has a
`kid_scale` that KID divides its features by: 1 for Inception (torch-fidelity's numbers), and
for a SmallCNN space the rms of its features over (up to SCALE_IMAGES of) the images the network
was trained on, a constant of the network, computed when the space is built and named in the
metrics' fingerprint (`kid_feature_scale` in metrics.json).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from ganzoo.data.images import as_unit_range, to_uint8
from ganzoo.data.prepared import Prepared
from ganzoo.errors import ConfigError
from ganzoo.evaluation.classifier import MAX_WORK_SIZE, ClassifierError, SmallCNN, get_classifier, labelled_images

# torch-fidelity's FID Inception weights; torch.hub caches downloads under <hub>/checkpoints/.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub's naming: the file's sha256 starts with this
SPACES = ("classifier", "rotation", "inception")
SCALE_IMAGES = 2000  # training images whose feature rms sets a SmallCNN space's KID scale
# A classifier's embedding is only as rich as its task: trained to tell 2 photos apart it sees which
# photo, little else (on `photos` a brightness shift moved its KID ~5 noise sd, the rotation net's
# ~45; benchmarks/RESULTS.md). Below this many classes `auto` takes the rotation space; the
# classifier still judges the classes (modes covered).
AUTO_MIN_CLASSES = 10


class FeatureError(ConfigError):
    """A user error about evaluation features (missing weights, package, labels); one line."""


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state (names, shapes, values): the same weights give the same hash
    whichever file or torch version they were saved with."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


class _FrozenExtractor(nn.Module):
    """Always in eval mode and without gradients, whatever the caller does with .train()."""

    def train(self, mode: bool = True) -> _FrozenExtractor:
        return super().train(False)


class ClassifierFeatures(_FrozenExtractor):
    """Penultimate embedding of a SmallCNN: the dataset's classifier, or its rotation net."""

    def __init__(self, classifier: SmallCNN, space: str = "classifier", kid_scale: float = 1.0):
        super().__init__()
        self.classifier = classifier
        self.space = space
        self.judges_classes = space == "classifier"  # a rotation head predicts angles, not classes
        self.num_features = int(classifier.num_features)
        self.kid_scale = kid_scale  # build_features sets the space's own (see the module docstring)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.classifier.parameters()).device
        x = x.to(dev)
        x = as_unit_range(x)
        return self.classifier.features(x).float()

    def describe(self) -> dict[str, str]:
        task = "class" if self.judges_classes else "rotation (self-supervised)"
        return {"name": f"{self.space} (SmallCNN {task} net, {self.classifier.arch})",
                "sha256": state_sha256(self.classifier), "layer": "embed (penultimate ReLU)",
                "dim": str(self.num_features),
                "resize": f"none at the prepared size (area-averaged to {MAX_WORK_SIZE} px when larger)"}


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
    """2048-d pool3 features of the FID Inception-v3: torch-fidelity's own network and forward
    (uint8 RGB in, TF1-style bilinear resize to 299, the TF graph's scaling), so features equal
    torch-fidelity's and pytorch-fid's; grey images are repeated to three channels first."""

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
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=str(weights_path))
        except (RuntimeError, KeyError, ValueError, OSError) as exc:  # not an Inception state dict
            raise FeatureError(f"{weights_path} is not FID Inception-v3 weights ({type(exc).__name__}); "
                               f"use torch-fidelity's {INCEPTION_FILE}") from None
        self.weights_path = weights_path
        self.num_features = 2048
        self.kid_scale = 1.0  # the features KID was defined on: torch-fidelity's numbers
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dtype == torch.uint8 else to_uint8(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        dev = next(self.net.parameters()).device
        (feats,) = self.net(x.to(dev).contiguous())
        return feats.float()

    def describe(self) -> dict[str, str]:
        sha = file_sha256(self.weights_path)
        standard = "standard FID weights" if sha.startswith(INCEPTION_SHA256_PREFIX) else "NOT the standard FID weights"
        return {"name": f"inception-v3-fid (torch-fidelity, {standard})", "sha256": sha,
                "layer": "pool3", "dim": str(self.num_features),
                "resize": "bilinear (TF1-compatible, as torch-fidelity) to 299x299; grey repeated to RGB"}


def feature_rms(extractor: nn.Module, images: torch.Tensor, n: int = SCALE_IMAGES, batch_size: int = 500) -> float:
    """rms of the extractor's features over n evenly spaced rows of uint8 `images` (deterministic,
    and a memory-mapped dataset is read at n rows only)."""
    from ganzoo.evaluation.metrics import extract

    count = int(images.shape[0])
    idx = torch.linspace(0, count - 1, min(n, count)).round().long().unique()
    feats, _ = extract(extractor, images[idx], batch_size)
    rms = float(feats.double().square().mean().sqrt())
    if not (rms > 0 and math.isfinite(rms)):  # a dead (all-zero) embedding: no scale to learn
        raise FeatureError(f"the {getattr(extractor, 'space', 'feature')} network's features are all zero or "
                           f"non-finite on the real images; retrain it with more eval.classifier_steps")
    return rms


def resolve_space(kind: str, prep: Prepared) -> str:
    """eval.features -> the feature space used: auto picks the classifier when the data has labels
    of at least AUTO_MIN_CLASSES classes, else rotation."""
    if kind == "auto":
        try:
            _, labels, _ = labelled_images(prep)
        except ClassifierError:
            return "rotation"
        classes = prep.num_classes or int(labels.max()) + 1
        return "classifier" if classes >= AUTO_MIN_CLASSES else "rotation"
    if kind not in SPACES:
        raise FeatureError(f"unknown eval.features {kind!r}; valid: auto, {', '.join(SPACES)}")
    return kind


def build_features(kind: str, prep: Prepared, eval_cfg, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, str, dict]:
    """-> (extractor, feature space = metric-key suffix, info for metrics.json)."""
    from ganzoo.evaluation.rotation import get_rotation_net, unlabelled_images

    space = resolve_space(kind, prep)
    if space == "classifier":
        try:
            model, acc = get_classifier(prep, eval_cfg, device)
        except ClassifierError as err:
            raise FeatureError(str(err)) from None
        ext = ClassifierFeatures(model)
        info = {"classifier_accuracy": acc}
        trained_on = labelled_images(prep)[0]
    elif space == "rotation":
        model, acc = get_rotation_net(prep, eval_cfg, device)
        ext = ClassifierFeatures(model, space="rotation")
        info = {"rotation_accuracy": acc}
        trained_on = unlabelled_images(prep)[0]
    else:
        inception = InceptionFeatures(inception_weights_path(eval_cfg)).to(device)
        return inception, space, {"feature_dim": inception.num_features, "kid_feature_scale": 1.0}
    ext.kid_scale = feature_rms(ext, trained_on)
    return ext, space, {**info, "feature_dim": ext.num_features, "kid_feature_scale": ext.kid_scale}


def fit_feature_space(prep: Prepared, eval_cfg, device: str | torch.device = "cpu") -> dict:
    """`ganzoo classifier`: train (or load) the networks evaluation will need for this data: the
    classifier when there are labels (the feature space and the judge of classes), the rotation
    net when the space is rotation. Inception has nothing to train."""
    from ganzoo.evaluation.classifier import classifier_path
    from ganzoo.evaluation.rotation import get_rotation_net, rotation_path, unlabelled_images

    space = resolve_space(eval_cfg.features, prep)
    out: dict = {"space": space}
    if space == "rotation":
        _, acc = get_rotation_net(prep, eval_cfg, device)
        out.update(path=str(rotation_path(prep, eval_cfg, unlabelled_images(prep)[1])), heldout_accuracy=acc)
        try:  # labelled data: the classifier still judges the classes evaluation reports
            _, judge_acc = get_classifier(prep, eval_cfg, device)
        except ClassifierError:
            return out
        out.update(classifier_path=str(classifier_path(prep, eval_cfg, labelled_images(prep)[2])),
                   classifier_accuracy=judge_acc)
        return out
    try:
        _, acc = get_classifier(prep, eval_cfg, device)
    except ClassifierError:
        if space == "classifier":
            raise
        Path(eval_cfg.classifier_dir).mkdir(parents=True, exist_ok=True)  # DVC's out exists, empty
        return {**out, "path": None, "heldout_accuracy": None}
    out.update(path=str(classifier_path(prep, eval_cfg, labelled_images(prep)[2])), heldout_accuracy=acc)
    return out

"""A small CNN classifier trained on the real data: the default feature space for FID/KID/PR
and the judge of which class a generated image belongs to (mode coverage, class KL).

Inception features are the standard, but their weights can't be fetched offline and mean little
on 28x28 digits; a classifier trained on the dataset itself is cheap, works for any size and
channel count, and its penultimate layer separates exactly the classes the GAN should cover.

Training is seeded with a fixed seed (not eval.seed) so the feature space depends only on the
data and the step count, which is also what the cache file name encodes: metrics computed in
different runs on the same data are comparable.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganzoo.data.images import as_unit_range, to_uint8
from ganzoo.data.prepared import Prepared, content_hash
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_bytes

CLASSIFIER_SEED = 0
FEATURE_DIM = 128
MAX_WORK_SIZE = 64  # larger inputs are block-averaged down first: classes survive, compute doesn't grow


class ClassifierError(ConfigError):
    """A user error about the evaluation classifier; the message is one line."""


def _block(cin: int, cout: int) -> nn.Sequential:
    # Strided convs, no BatchNorm: several times faster on CPU than conv+BN+maxpool, and
    # train/eval behave identically (features don't depend on batch composition).
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True))


class SmallCNN(nn.Module):
    """Three stride-2 convs (w, 2w, 4w channels), 4x4 adaptive pool, 128-d ReLU embedding, linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.arch = dict(in_channels=in_channels, num_classes=num_classes, width=width, feature_dim=feature_dim)
        self.num_features = feature_dim
        self.body = nn.Sequential(_block(in_channels, width), _block(width, 2 * width),
                                  _block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(4 * width * 16, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float [-1, 1] NCHW -> (N, feature_dim) penultimate embedding."""
        if x.shape[-1] > MAX_WORK_SIZE or x.shape[-2] > MAX_WORK_SIZE:
            x = F.adaptive_avg_pool2d(x, (min(x.shape[-2], MAX_WORK_SIZE), min(x.shape[-1], MAX_WORK_SIZE)))
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def stratified_split(labels: torch.Tensor, holdout: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class shuffled split so every class is represented in the held-out set."""
    train, held = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_held = int(round(idx.numel() * holdout)) if idx.numel() > 1 else 0
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def _shift(x: torch.Tensor, gen: torch.Generator, max_frac: float = 0.08) -> torch.Tensor:
    """Random per-sample translation by up to ~8% of the size (light augmentation)."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1).mul(2 * max_frac).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 or [-1, 1] float images -> predicted labels (CPU int64). Float images are quantised
    to uint8 first, the same input pipeline as the real images and as the feature metrics."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size]
        x = as_unit_range((x if x.dtype == torch.uint8 else to_uint8(x)).to(dev))
        out.append(model(x).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def train_classifier(images_uint8: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int,
                     seed: int = CLASSIFIER_SEED, device: str | torch.device = "cpu",
                     batch_size: int = 64, lr: float = 2e-3, holdout: float = 0.15,
                     augment: bool = True) -> tuple[SmallCNN, float]:
    """Train SmallCNN on uint8 NCHW images; returns (model in eval mode, held-out accuracy)."""
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ClassifierError("classifier expects uint8 NCHW images, "
                              f"got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    labels = labels.long().cpu()
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    train_idx, held_idx = stratified_split(labels, holdout, gen)
    x_all = images_uint8.to(device)  # scaled per batch in _fit: a float copy of a big set is 4x its size
    y_all = labels.to(device)
    # Init and dropout draw from the global RNG: seed it, without disturbing the caller's.
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = SmallCNN(images_uint8.shape[1], num_classes).to(device)
        _fit(model, x_all, y_all, train_idx, steps, gen, batch_size, lr, augment)
    if held_idx.numel() == 0:
        return model, float("nan")
    pred = predict(model, images_uint8[held_idx])
    return model, float((pred == labels[held_idx]).float().mean())


def _fit(model: SmallCNN, x_all: torch.Tensor, y_all: torch.Tensor, train_idx: torch.Tensor, steps: int,
         gen: torch.Generator, batch_size: int, lr: float, augment: bool) -> None:
    device = x_all.device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # Cosine decay: a short schedule that still ends with small, stable steps.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    model.train()
    for _ in range(steps):
        pick = train_idx[torch.randint(train_idx.numel(), (batch_size,), generator=gen)].to(device)
        x, y = as_unit_range(x_all[pick]), y_all[pick]
        if augment:
            x = _shift(x, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


# --------------------------------------------------------------------------- caching

def labelled_images(prep: Prepared) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images the classifier learns and their labels: x/y, or the target domain b for translation."""
    t = prep.tensors
    for img_key, lab_key in (("x", "y"), ("b", "y"), ("b", "y_b")):
        if img_key in t and lab_key in t:
            return t[img_key], t[lab_key], img_key
    raise ClassifierError(f"classifier features need class labels but this {prep.kind} dataset has none; "
                          "set eval.features=rotation (or auto: a rotation-prediction net trained on these "
                          "images) or eval.features=inception")


def classifier_path(prep: Prepared, eval_cfg, img_key: str = "x") -> Path:
    chash = prep.manifest.get("content_hash") or content_hash(prep.tensors)
    part = "" if img_key == "x" else f"-{img_key}"
    return Path(eval_cfg.classifier_dir) / f"{chash}{part}-{eval_cfg.classifier_steps}.pt"


def _load(path: Path, device) -> tuple[SmallCNN, float] | None:
    try:
        ck = torch.load(path, weights_only=True, map_location="cpu")
        model = SmallCNN(**ck["arch"])
        model.load_state_dict(ck["state_dict"])
    except Exception:  # noqa: BLE001 -- a stale or corrupt cache is retrained, never trusted
        return None
    return model.to(device).eval(), float(ck["accuracy"])


def get_classifier(prep: Prepared, eval_cfg, device: str | torch.device = "cpu") -> tuple[SmallCNN, float]:
    """Cached classifier for this dataset content: load `<classifier_dir>/<hash>-<steps>.pt` or train and save it."""
    images, labels, img_key = labelled_images(prep)
    path = classifier_path(prep, eval_cfg, img_key)
    if path.exists():
        loaded = _load(path, device)
        if loaded is not None:
            return loaded
    num_classes = prep.num_classes or int(labels.max()) + 1
    model, acc = train_classifier(images, labels, num_classes, eval_cfg.classifier_steps,
                                  seed=CLASSIFIER_SEED, device=device)
    save_model(path, model, acc, images, eval_cfg.classifier_steps)
    return model, acc


def save_model(path: Path, model: SmallCNN, acc: float, images: torch.Tensor, steps: int) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ck = {"state_dict": state, "accuracy": acc, "arch": model.arch, "image_shape": list(images.shape[1:]),
          "steps": steps}
    atomic_write_bytes(path, lambda f: torch.save(ck, f))

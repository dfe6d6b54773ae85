"""A feature space for unlabelled images: SmallCNN trained to tell how an image was rotated
(0, 90, 180 or 270 degrees; Gidaris et al. 2018), on the prepared real images themselves.

Colour photos without classes have no classifier to borrow, and a digit classifier would be a
feature space about digits. Predicting the rotation needs no labels, yet the network must learn
what upright objects, horizons and textures look like, so its penultimate embedding separates
images by content; its metric keys say which space they come from (`fid_rotation`, ...) and its
held-out rotation accuracy (`rotation_accuracy`; chance is 0.25) says how much it learned.

Training mirrors the classifier's (fixed seed, cached per dataset content and step count), and
images are split into train and held-out sets before rotating, so no rotation of a held-out
image is ever trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganzoo.data.prepared import Prepared, content_hash
from ganzoo.errors import ConfigError
from ganzoo.evaluation.classifier import CLASSIFIER_SEED, SmallCNN, _fit, _load, predict, save_model

ROTATIONS = 4
MAX_IMAGES = 5000  # enough to learn the task; bounds the 4x rotated copy's memory on big datasets
HOLDOUT = 0.15


def all_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) -> (4N, C, H, W) images rotated by k * 90 degrees and their labels k."""
    if images.shape[-1] != images.shape[-2]:
        raise ConfigError(f"rotation features need square images, got {tuple(images.shape[-2:])}; "
                          "prepare the data with data.image_size")
    rotated = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(ROTATIONS)])
    labels = torch.arange(ROTATIONS).repeat_interleave(images.shape[0])
    return rotated, labels


def train_rotation_net(images_uint8: torch.Tensor, steps: int, seed: int = CLASSIFIER_SEED,
                       device: str | torch.device = "cpu", batch_size: int = 64,
                       lr: float = 2e-3) -> tuple[SmallCNN, float]:
    """Train SmallCNN(4 classes) on rotations of uint8 NCHW images -> (model, held-out rotation accuracy)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(images_uint8.shape[0], generator=gen)[:MAX_IMAGES]
    n_held = int(round(order.numel() * HOLDOUT)) if order.numel() > 1 else 0
    held, train = order[:n_held].sort().values, order[n_held:].sort().values
    x_train, y_train = all_rotations(images_uint8[train])
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # init and dropout draw from the global RNG
        torch.manual_seed(seed)
        model = SmallCNN(images_uint8.shape[1], ROTATIONS).to(device)
        # No shift augmentation: a rotated image is already a different input, and shifts of
        # an upright image are not the invariance this task is about.
        _fit(model, x_train.to(device), y_train.to(device), torch.arange(x_train.shape[0]),
             steps, gen, batch_size, lr, augment=False)
    if n_held == 0:
        return model, float("nan")
    x_held, y_held = all_rotations(images_uint8[held])
    return model, float((predict(model, x_held) == y_held).float().mean())


def unlabelled_images(prep: Prepared) -> tuple[torch.Tensor, str]:
    """The images whose distribution the metrics compare: x, or the target domain b for translation."""
    for key in ("x", "b"):
        if key in prep.tensors:
            return prep.tensors[key], key
    raise ConfigError(f"this {prep.kind} dataset has no images to learn rotation features from")


def rotation_path(prep: Prepared, eval_cfg, img_key: str = "x") -> Path:
    chash = prep.manifest.get("content_hash") or content_hash(prep.tensors)
    part = "" if img_key == "x" else f"-{img_key}"
    return Path(eval_cfg.classifier_dir) / f"{chash}{part}-rotation-{eval_cfg.classifier_steps}.pt"


def get_rotation_net(prep: Prepared, eval_cfg, device: str | torch.device = "cpu") -> tuple[SmallCNN, float]:
    """Cached rotation net for this dataset content (eval.classifier_steps steps, eval.classifier_dir)."""
    images, img_key = unlabelled_images(prep)
    path = rotation_path(prep, eval_cfg, img_key)
    if path.exists():
        loaded = _load(path, device)
        if loaded is not None:
            return loaded
    model, acc = train_rotation_net(images, eval_cfg.classifier_steps, device=device)
    save_model(path, model, acc, images, eval_cfg.classifier_steps)
    return model, acc

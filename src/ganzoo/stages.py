"""The pipeline's stages as plain functions of a Config. The CLI, `dvc.yaml` and the Prefect
flows all call these and add no logic of their own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganzoo.config import Config, ConfigError
from ganzoo.data.prepared import Prepared, load_prepared, prepared_path, to_uint8
from ganzoo.variants import registry


def prepare(cfg: Config) -> Prepared:
    """Source -> `data/prepared/<source>-<size>/` (data.pt + manifest.json)."""
    from ganzoo.data.prepare import prepare_data

    cfg = registry.resolve(cfg)  # data.source=auto -> the variant's default dataset
    return prepare_data(cfg.data, batch_size=cfg.train.batch_size)


def load_data(cfg: Config) -> Prepared:
    return load_prepared(prepared_path(registry.resolve(cfg).data))


def train(cfg: Config, resume: str = "no", track: bool | None = None):
    """Train cfg.variant on the prepared data; returns a TrainResult (checkpoint path, history)."""
    from ganzoo.training.distributed import env_rank_world
    from ganzoo.training.loop import train_loop

    cfg = registry.resolve(cfg)
    prep = load_data(cfg)
    hooks = []
    tracker = _tracker(cfg, track) if env_rank_world()[0] == 0 else None  # one MLflow run, from rank 0
    if tracker is not None:
        hooks.append(tracker.training_hooks())
    try:
        return train_loop(cfg, prep, resume=resume, hooks=hooks)
    finally:
        if tracker is not None:
            tracker.close()


def _tracker(cfg: Config, track: bool | None):
    enabled = cfg.tracking.enabled if track is None else track
    if not enabled:
        return None
    try:
        from ganzoo.tracking import open_tracker
    except ImportError:  # tracking layer not installed in this build
        return None
    return open_tracker(cfg)


def fit_classifier(cfg: Config) -> dict:
    """Train (or load from its cache) the evaluation classifier on the prepared real data."""
    from ganzoo.evaluation.classifier import classifier_path, get_classifier, labelled_images
    from ganzoo.training.device import resolve_device

    prep = load_data(cfg)
    _, acc = get_classifier(prep, cfg.eval, resolve_device(cfg.train.device))
    path = classifier_path(prep, cfg.eval, labelled_images(prep)[2])
    return {"path": str(path), "heldout_accuracy": acc}


def checkpoint_path(cfg: Config) -> Path:
    from ganzoo.training.checkpoint import checkpoint_dir

    return checkpoint_dir(cfg) / "last.pt"


def evaluate(cfg: Config, checkpoint: str | Path | None = None, track: bool | None = None) -> dict:
    """Metrics + sample sheets for a trained checkpoint -> `<eval.out_dir>/<variant>/metrics.json`."""
    from ganzoo.evaluation.run import evaluate_checkpoint

    ckpt = Path(checkpoint) if checkpoint else checkpoint_path(cfg)
    metrics = evaluate_checkpoint(cfg, ckpt)
    tracker = _tracker(cfg, track)
    if tracker is not None:
        try:
            tracker.log_evaluation(ckpt, metrics, Path(cfg.eval.out_dir) / cfg.variant)
        finally:
            tracker.close()
    return metrics


def register(cfg: Config, checkpoint: str | Path | None = None) -> dict:
    """Log the generator as an MLflow model, register it, move `champion` only if it is better."""
    from ganzoo.tracking.registry import register_checkpoint

    ckpt = Path(checkpoint) if checkpoint else checkpoint_path(cfg)
    metrics_file = Path(cfg.eval.out_dir) / cfg.variant / "metrics.json"
    if not metrics_file.exists():
        raise ConfigError(f"no metrics at {metrics_file}; run `ganzoo evaluate` before `ganzoo register`")
    return register_checkpoint(cfg, ckpt, json.loads(metrics_file.read_text()))


# --------------------------------------------------------------------------- sampling

def load_generator(ref: str | Path, device: str = "cpu"):
    """A checkpoint path, or an MLflow model URI (models:/NAME@alias, runs:/...)."""
    ref = str(ref)
    if ref.startswith(("models:/", "runs:/")):
        from ganzoo.tracking.pyfunc import load_variant_from_uri

        return load_variant_from_uri(ref, device=device)
    from ganzoo.training.checkpoint import load_variant

    variant, _, _ = load_variant(ref, device=device)
    return variant


def parse_labels(text: str | None, n: int, num_classes: int | None) -> torch.Tensor | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected comma-separated class indices, e.g. --labels 0,1,2") from None
    if not values:
        raise ConfigError("--labels is empty; give class indices, e.g. --labels 0,1,2")
    bad = [v for v in values if num_classes is not None and not 0 <= v < num_classes]
    if bad:
        raise ConfigError(f"--labels: {bad[0]} is out of range; classes are 0..{num_classes - 1}")
    # Labels repeat to fill n: --labels 0,1 --n 4 gives 0,1,0,1.
    return torch.tensor([values[i % len(values)] for i in range(n)], dtype=torch.long)


def parse_codes(text: str | None) -> dict | None:
    """`--codes cat=3,c1=-1.5` -> {'cat': 3, 'c1': -1.5}."""
    if text is None:
        return None
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"--codes {text!r}: expected NAME=VALUE pairs, e.g. --codes cat=3,c1=0.5")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"--codes: {part!r} has a non-numeric value") from None
    return out


@torch.no_grad()
def generate(variant, n: int, seed: int = 0, labels: torch.Tensor | None = None, codes: dict | None = None,
             batch_size: int = 500) -> torch.Tensor:
    """n images in [-1, 1] (NCHW, CPU), reproducible for a given seed."""
    if variant.translates:
        raise ConfigError(f"variant {variant.name!r} translates images and needs inputs; "
                          f"use `ganzoo translate CHECKPOINT --input DIR --out DIR`")
    if labels is not None and not variant.takes_labels:
        raise ConfigError(f"variant {variant.name!r} is unconditional and takes no --labels; drop --labels")
    if codes is not None and not variant.takes_codes:
        raise ConfigError(f"variant {variant.name!r} takes no --codes (only infogan does); drop --codes")
    variant.eval()
    gen = torch.Generator(device=variant.device)
    gen.manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        lab = labels[i:i + m].to(variant.device) if labels is not None else None
        out.append(variant.sample(m, generator=gen, labels=lab, codes=codes).float().cpu())
    return torch.cat(out)


def write_samples(images: torch.Tensor, out: str | Path, labels: torch.Tensor | None = None, nrow: int | None = None) -> Path:
    """`.npz` with uint8 `images` (N, H, W, C) (+ `labels`), or a `.png` grid."""
    from ganzoo.data.prepared import atomic_write_bytes

    out = Path(out)
    if out.suffix == ".npz":
        arrays = {"images": to_uint8(images).permute(0, 2, 3, 1).numpy()}
        if labels is not None:
            arrays["labels"] = labels.numpy().astype(np.int64)
        atomic_write_bytes(out, lambda f: np.savez_compressed(f, **arrays))
    elif out.suffix.lower() == ".png":
        from ganzoo.evaluation.sheets import save_grid

        save_grid(images, out, nrow=nrow or max(1, int(len(images) ** 0.5)))
    else:
        raise ConfigError(f"--out {str(out)!r}: use a .npz (arrays) or .png (grid) file name")
    return out

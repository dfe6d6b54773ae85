"""`ganzoo evaluate`: a checkpoint -> `<eval.out_dir>/<variant>/metrics.json` + `sheets/*.png`.

Everything is drawn from fixed seeds (eval.seed) and a fixed sample count (eval.n_samples), so
the same checkpoint evaluated twice gives byte-identical metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ganzoo.config import Config
from ganzoo.data.prepared import Prepared, load_prepared, prepared_path
from ganzoo.errors import ConfigError
from ganzoo.evaluation import sheets
from ganzoo.evaluation.classifier import ClassifierError, get_classifier, predict
from ganzoo.evaluation.features import build_features
from ganzoo.evaluation.metrics import compute_image_metrics
from ganzoo.files import atomic_write_text
from ganzoo.paths import RunPaths
from ganzoo.sampling import generate
from ganzoo.training.checkpoint import load_variant
from ganzoo.training.device import resolve_device


def _generate(variant, n: int, seed: int, labels=None, codes=None, batch_size: int = 500) -> torch.Tensor:
    return generate(variant, n, seed=seed, labels=labels, codes=codes, batch_size=batch_size)


def _real_images(prep: Prepared, n: int, seed: int) -> torch.Tensor:
    """The reference set: all real images, or a seeded subset of n when there are more."""
    x = prep.tensors["x"]
    if x.shape[0] <= n:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def conditional_metrics(variant, classifier, num_classes: int, n: int, seed: int) -> dict:
    """cgan: accuracy of the classifier on samples generated for each requested class."""
    per = max(1, n // num_classes)
    labels = torch.arange(num_classes).repeat_interleave(per)
    images = _generate(variant, len(labels), seed, labels=labels)
    pred = predict(classifier, images)
    return {"label_accuracy": float((pred == labels).float().mean())}


def infogan_metrics(variant, classifier, num_classes: int, n: int, seed: int) -> dict:
    """Categorical purity: for each value of the categorical code, the share of its samples in
    the digit class they most often map to (averaged over codes; 1.0 = each code is one class).
    Traversal change: mean absolute pixel change when one continuous code moves from -1 to +1
    with everything else fixed (0 would mean the code is ignored)."""
    per = max(1, n // variant.n_cat)
    purity = []
    for k in range(variant.n_cat):
        pred = predict(classifier, _generate(variant, per, seed, codes={"cat": k}))
        purity.append(float(torch.bincount(pred, minlength=num_classes).max()) / per)
    out = {"infogan_purity": sum(purity) / len(purity)}
    for j in range(1, variant.n_cont + 1):
        lo = _generate(variant, 64, seed, codes={f"c{j}": -1.0})
        hi = _generate(variant, 64, seed, codes={f"c{j}": 1.0})
        out[f"infogan_traversal_change_c{j}"] = float((hi - lo).abs().mean() / 2)
    return out


def synthesis_sheets(variant, out: Path, seed: int, num_classes: int | None) -> None:
    sheets.save_grid(_generate(variant, 64, seed), out / "samples.png", nrow=8)
    if variant.takes_labels and num_classes:
        rows = [_generate(variant, 10, seed, labels=torch.full((10,), c)) for c in range(num_classes)]
        sheets.save_class_sheet(rows, out / "classes.png")
    if variant.takes_codes:
        steps = torch.linspace(-2, 2, 9)
        for j in range(1, variant.n_cont + 1):
            frames = [torch.cat([_generate(variant, 1, seed + k, codes={"cat": k, f"c{j}": float(v)}) for v in steps])
                      for k in range(variant.n_cat)]
            sheets.save_interpolation_strip(torch.stack(frames), out / f"traversal_c{j}.png")
    if variant.latent_dim:
        sheets.save_interpolation_strip(interpolation_frames(variant, seed), out / "interpolation.png")


@torch.no_grad()
def interpolation_frames(variant, seed: int, rows: int = 6, steps: int = 10) -> torch.Tensor:
    """(rows, steps, C, H, W): each row walks the latent between two prior draws (spherically),
    its condition fixed: row r's class for cgan, categorical code r with the continuous codes at 0
    for infogan, so only z changes along a row."""
    variant.eval()
    g = torch.Generator(device=variant.device).manual_seed(seed)
    z0, z1 = variant.noise(rows, variant.latent_dim, g), variant.noise(rows, variant.latent_dim, g)
    z = sheets.interpolation_latents(z0, z1, steps).view(rows, steps, -1)
    frames = []
    for r in range(rows):
        labels, codes = None, None
        if variant.takes_labels:
            labels = torch.full((steps,), r % variant.data.num_classes, device=variant.device)
        if variant.takes_codes:
            codes = {"cat": r % variant.n_cat, **{f"c{j}": 0.0 for j in range(1, variant.n_cont + 1)}}
        frames.append(variant.decode(z[r], labels=labels, codes=codes, generator=g).float().cpu())
    return torch.stack(frames)


def evaluate_synthesis(cfg: Config, variant, prep: Prepared, device, out: Path) -> dict:
    ev = cfg.eval
    extractor, suffix, info = build_features(ev.features, prep, ev, device)
    fake = _generate(variant, ev.n_samples, ev.seed, batch_size=ev.batch_size)
    real = _real_images(prep, ev.n_samples, ev.seed)
    classifier = None
    if "y" in prep.tensors:
        classifier, acc = get_classifier(prep, ev, device)
        info["classifier_accuracy"] = acc
    num_classes = prep.num_classes
    metrics: dict[str, Any] = compute_image_metrics(
        extractor, real, fake, batch_size=ev.batch_size, suffix=suffix, classifier=classifier,
        num_classes=num_classes, kid_subset_size=min(ev.kid_subset_size, len(real), len(fake)),
        pr_k=ev.pr_k, seed=ev.seed)
    metrics.update({k: v for k, v in info.items() if isinstance(v, (int, float))})
    metrics["primary_metric"] = f"fid_{suffix}"
    if classifier is not None and variant.takes_labels:
        assert num_classes is not None, "labelled data names its classes"
        metrics.update(conditional_metrics(variant, classifier, num_classes, ev.n_samples, ev.seed))
    if classifier is not None and variant.takes_codes:
        assert num_classes is not None, "labelled data names its classes"
        metrics.update(infogan_metrics(variant, classifier, num_classes, ev.n_samples, ev.seed))
    synthesis_sheets(variant, out / "sheets", ev.seed, num_classes)
    return metrics


def evaluate_translation(cfg: Config, variant, prep: Prepared, device, out: Path) -> dict:
    from ganzoo.evaluation.translation import translation_metrics, translation_sheet

    classifier = None
    info: dict = {}
    try:
        classifier, info["classifier_accuracy"] = get_classifier(prep, cfg.eval, device)
    except ClassifierError:
        pass  # unlabelled translation data: no class preservation / feature distance
    metrics = translation_metrics(variant, prep, classifier=classifier,
                                  feature_fn=classifier.features if classifier is not None else None)
    metrics.update(info)
    if "primary_metric" not in metrics:
        # Paired: distance to the true target; unpaired: whether the content (class) survives,
        # else how well the cycle reconstructs.
        if "l1" in metrics:
            metrics.update(primary_metric="l1", primary_higher_is_better=False)
        elif "class_preservation" in metrics:
            metrics.update(primary_metric="class_preservation", primary_higher_is_better=True)
        else:
            metrics.update(primary_metric="cycle_error_a", primary_higher_is_better=False)
    translation_sheet(variant, prep, out / "sheets" / "translations.png")
    return metrics


def evaluate_checkpoint(cfg: Config, checkpoint: Path) -> dict:
    device = resolve_device(cfg.train.device)
    variant, trained_cfg, ckpt = load_variant(checkpoint, device=device)
    # The data the checkpoint was trained on, wherever the current params point.
    prep = load_prepared(prepared_path(trained_cfg.data))
    if prep.manifest.get("content_hash") != variant.data.content_hash:
        raise ConfigError(f"{prepared_path(trained_cfg.data)} changed since {checkpoint} was trained "
                          f"(content hash differs); re-run `ganzoo prepare` with the same data or retrain")
    paths = RunPaths.of(cfg.model_copy(update={"variant": variant.name}))
    out = paths.eval_dir
    if variant.translates:
        metrics = evaluate_translation(cfg, variant, prep, device, out)
    else:
        metrics = evaluate_synthesis(cfg, variant, prep, device, out)
    metrics.setdefault("primary_higher_is_better", False)
    result = {"variant": variant.name, "source": trained_cfg.data.source, "step": int(ckpt["step"]),
              "n_samples": cfg.eval.n_samples, "eval_seed": cfg.eval.seed, **metrics}
    result = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    atomic_write_text(paths.metrics, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result

"""`ganzoo evaluate`: a checkpoint -> `<eval.out_dir>/<variant>/metrics.json` + `sheets/*.png`.

Everything is drawn from fixed seeds (eval.seed) and a fixed sample count (eval.n_samples), so
the same checkpoint evaluated twice gives byte-identical metrics.json. Each metric family
(feature space, classes, pixels) carries its fingerprint (see fingerprint.py): which network,
which inputs, which reference images, how many samples, which seed, which estimator settings.
Several checkpoints of one config (seeds) are evaluated side by side and aggregated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ganzoo.config import Config
from ganzoo.data.prepared import KIND_KEYS, Prepared, load_prepared, prepared_path
from ganzoo.errors import ConfigError
from ganzoo.evaluation import fingerprint, sheets
from ganzoo.evaluation.classifier import ClassifierError, SmallCNN, get_classifier, predict
from ganzoo.evaluation.features import ClassifierFeatures, build_features
from ganzoo.evaluation.metrics import (
    CLASS_METRICS,
    compute_image_metrics,
    feature_metric_names,
    majority_code_purity,
    matched_code_accuracy,
)
from ganzoo.files import atomic_write_text
from ganzoo.paths import RunPaths
from ganzoo.sampling import generate
from ganzoo.training.checkpoint import load_variant
from ganzoo.training.device import resolve_device

KID_SUBSETS = 100
TRAVERSAL_SAMPLES = 64


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
    """Categorical code against the classifier's classes, from n // n_cat samples per code:
    `infogan_code_accuracy`, the InfoGAN paper's score (best one-to-one matching of codes to
    classes), and `infogan_majority_purity` (each code's share in its most frequent class; codes
    may share a class, so a code-ignoring generator scores 1.0 here and 1/n_classes above)."""
    per = max(1, n // variant.n_cat)
    codes, classes = [], []
    for k in range(variant.n_cat):
        classes.append(predict(classifier, _generate(variant, per, seed, codes={"cat": k})))
        codes.append(torch.full((per,), k))
    code_t, class_t = torch.cat(codes), torch.cat(classes)
    return {"infogan_code_accuracy": matched_code_accuracy(code_t, class_t, variant.n_cat, num_classes),
            "infogan_majority_purity": majority_code_purity(code_t, class_t, variant.n_cat, num_classes)}


def traversal_metrics(variant, seed: int) -> dict:
    """`infogan_traversal_change_c<j>`: the mean absolute pixel change when continuous code j moves
    from -1 to +1 with everything else fixed (0 would mean the code is ignored); needs no labels."""
    out = {}
    for j in range(1, variant.n_cont + 1):
        lo = _generate(variant, TRAVERSAL_SAMPLES, seed, codes={f"c{j}": -1.0})
        hi = _generate(variant, TRAVERSAL_SAMPLES, seed, codes={f"c{j}": 1.0})
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


def feature_family(extractor, prep: Prepared, ev, names: list[str], ref_key: str, split: str,
                   ref_count: int, generated: int, estimator: str | None = None) -> dict:
    """The fingerprint of the feature-space metrics (fid/kid/precision/recall in one space)."""
    desc = extractor.describe()
    kid_size = min(ev.kid_subset_size, ref_count, generated)
    estimator = estimator or (f"fid: Frechet distance, float64; kid: cubic polynomial kernel, unbiased MMD^2, "
                              f"{KID_SUBSETS} subsets of {kid_size} (torch-fidelity's draws); "
                              f"precision/recall: k={ev.pr_k}")
    if any(n.endswith("_ci_low") for n in names):
        estimator += f"; fid interval: {ev.bootstrap} bootstrap replicates over generated samples, level {ev.ci_level}"
    part = fingerprint.extractor_part(desc)
    if any(n.startswith("kid_") for n in names):  # KID's features are divided by the space's scale
        part += f" kid_scale={getattr(extractor, 'kid_scale', 1.0):.6g}"
    return fingerprint.make(names, extractor=part,
                            input=fingerprint.input_part(desc, prep.tensors[ref_key].shape[1:]),
                            reference=fingerprint.reference_part(prep, ref_key, split, ref_count, ev.seed),
                            generated=str(generated), seed=str(ev.seed), estimator=estimator)


def class_family(classifier, prep: Prepared, ev, names: list[str], ref_key: str, split: str, ref_count: int,
                 generated: str) -> dict:
    """The fingerprint of metrics judged by the dataset's classifier (classes, labels, codes)."""
    desc = ClassifierFeatures(classifier).describe()
    return fingerprint.make(names, extractor=fingerprint.extractor_part(desc),
                            input=fingerprint.input_part(desc, prep.tensors[ref_key].shape[1:]),
                            reference=fingerprint.reference_part(prep, ref_key, split, ref_count, ev.seed),
                            generated=generated, seed=str(ev.seed),
                            estimator="argmax class; mode coverage at 2% of samples; class_kl smoothed by 1e-6")


def pixel_family(prep: Prepared, ev, names: list[str], ref_key: str | None, split: str, generated: str,
                 estimator: str) -> dict:
    """The fingerprint of metrics computed on pixels in [0, 1] (no feature network)."""
    shape = prep.tensors[ref_key or KIND_KEYS[prep.kind][0]].shape[1:]
    ref = (fingerprint.reference_part(prep, ref_key, split, int(prep.tensors[ref_key].shape[0]))
           if ref_key else "none")
    return fingerprint.make(names, extractor=fingerprint.extractor_part(None),
                            input=f"float [-1, 1] network output scaled to [0, 1], not quantised; images "
                                  f"{'x'.join(map(str, shape))}",
                            reference=ref, generated=generated, seed=str(ev.seed), estimator=estimator)


def _judge(extractor) -> SmallCNN | None:
    """The classifier inside classifier features (one network for features and classes)."""
    return extractor.classifier if isinstance(extractor, ClassifierFeatures) and extractor.judges_classes else None


def evaluate_synthesis(cfg: Config, variant, prep: Prepared, device, out: Path) -> dict:
    ev = cfg.eval
    extractor, space, info = build_features(ev.features, prep, ev, device)
    fake = _generate(variant, ev.n_samples, ev.seed, batch_size=ev.batch_size)
    real = _real_images(prep, ev.n_samples, ev.seed)
    classifier = _judge(extractor)
    if classifier is None and "y" in prep.tensors:  # the judge of classes, whatever the feature space
        classifier, info["classifier_accuracy"] = get_classifier(prep, ev, device)
    num_classes = prep.num_classes
    metrics: dict[str, Any] = compute_image_metrics(
        extractor, real, fake, batch_size=ev.batch_size, suffix=space, classifier=classifier,
        num_classes=num_classes, kid_subset_size=min(ev.kid_subset_size, len(real), len(fake)),
        kid_subsets=KID_SUBSETS, pr_k=ev.pr_k, seed=ev.seed, bootstrap=ev.bootstrap, ci_level=ev.ci_level)
    metrics.update({k: v for k, v in info.items() if isinstance(v, (int, float))})
    metrics["primary_metric"] = f"fid_{space}"
    families = {space: feature_family(extractor, prep, ev, [k for k in feature_metric_names(space, True)
                                                            if k in metrics], "x", "train", len(real), len(fake))}
    judged = [k for k in CLASS_METRICS if k in metrics]
    generated = [f"{ev.n_samples} unconditional"]
    if classifier is not None and variant.takes_labels:
        assert num_classes is not None, "labelled data names its classes"
        metrics.update(conditional_metrics(variant, classifier, num_classes, ev.n_samples, ev.seed))
        judged.append("label_accuracy")
        generated.append(f"{max(1, ev.n_samples // num_classes)} per class")
    if classifier is not None and variant.takes_codes:
        assert num_classes is not None, "labelled data names its classes"
        metrics.update(infogan_metrics(variant, classifier, num_classes, ev.n_samples, ev.seed))
        judged += ["infogan_code_accuracy", "infogan_majority_purity"]
        generated.append(f"{max(1, ev.n_samples // variant.n_cat)} per categorical code")
    if variant.takes_codes and variant.n_cont:
        traversal = traversal_metrics(variant, ev.seed)
        metrics.update(traversal)
        families["pixels"] = pixel_family(prep, ev, list(traversal), None, "", f"{TRAVERSAL_SAMPLES} per end",
                                          "mean |G(c=+1) - G(c=-1)| / 2 over pixels, other inputs fixed")
    if classifier is not None and judged:
        families["classes"] = class_family(classifier, prep, ev, judged, "x", "train", len(real),
                                           "; ".join(generated))
    synthesis_sheets(variant, out / "sheets", ev.seed, num_classes)
    return {**metrics, **fingerprint_fields(families)}


def fingerprint_fields(families: dict[str, dict]) -> dict:
    """metrics.json's fingerprint entries: the parts under `fingerprint`, each hash also top level."""
    return {"fingerprint": families, **{f"fingerprint_{name}": f["hash"] for name, f in families.items()}}


def evaluate_translation(cfg: Config, variant, prep: Prepared, device, out: Path) -> dict:
    from ganzoo.evaluation.translation import translation_metrics, translation_sheet

    ev = cfg.eval
    extractor, space, info = build_features(ev.features, prep, ev, device)
    classifier = _judge(extractor)
    if classifier is None:
        try:
            classifier, info["classifier_accuracy"] = get_classifier(prep, ev, device)
        except ClassifierError:
            pass  # unlabelled translation data: no class preservation
    metrics = translation_metrics(variant, prep, classifier=classifier, feature_fn=extractor, space=space)
    metrics.update({k: v for k, v in info.items() if isinstance(v, (int, float))})
    n_test = int(prep.tensors["a_test"].shape[0])
    families = {}
    if f"fid_{space}" in metrics:
        families[space] = feature_family(extractor, prep, ev, [f"fid_{space}"], "b_test", "test",
                                         int(prep.tensors["b_test"].shape[0]), n_test,
                                         "fid: Frechet distance, float64, of A->B translations of the A test split")
    pixel = [k for k in ("l1", "psnr", "ssim", "cycle_error_a", "cycle_error_b") if k in metrics]
    if pixel:
        families["pixels"] = pixel_family(prep, ev, pixel, "b_test", "test", f"{n_test} translations of a_test",
                                          "l1: mean |x - y|; psnr: mean of per-image PSNR, capped at 100 dB; "
                                          "ssim: torchmetrics, mean over images; cycle: mean |F(G(x)) - x|")
    if "class_preservation" in metrics and classifier is not None:
        families["classes"] = class_family(classifier, prep, ev, ["class_preservation"], "b_test", "test",
                                           int(prep.tensors["b_test"].shape[0]),
                                           f"{n_test} translations of a_test, judged against their source class")
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
    return {**metrics, **fingerprint_fields(families)}


def evaluate_checkpoint(cfg: Config, checkpoint: Path, out_dir: Path | None = None) -> dict:
    """Evaluate one checkpoint -> metrics (also written to `<out_dir>/metrics.json`, by default
    `<eval.out_dir>/<variant>/`, with the sheets beside it)."""
    device = resolve_device(cfg.train.device)
    variant, trained_cfg, ckpt = load_variant(checkpoint, device=device)
    # The data the checkpoint was trained on, wherever the current params point.
    prep = load_prepared(prepared_path(trained_cfg.data))
    if prep.manifest.get("content_hash") != variant.data.content_hash:
        raise ConfigError(f"{prepared_path(trained_cfg.data)} changed since {checkpoint} was trained "
                          f"(content hash differs); re-run `ganzoo prepare` with the same data or retrain")
    paths = RunPaths.of(cfg.model_copy(update={"variant": variant.name}))
    out = out_dir if out_dir is not None else paths.eval_dir
    if variant.translates:
        metrics = evaluate_translation(cfg, variant, prep, device, out)
    else:
        metrics = evaluate_synthesis(cfg, variant, prep, device, out)
    metrics.setdefault("primary_higher_is_better", False)
    result = {"variant": variant.name, "source": trained_cfg.data.source, "step": int(ckpt["step"]),
              "n_samples": cfg.eval.n_samples, "eval_seed": cfg.eval.seed, **metrics}
    result = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def evaluate_checkpoints(cfg: Config, checkpoints: list[Path]) -> tuple[list[dict], dict]:
    """Several checkpoints of one config (seeds): each evaluated into
    `<eval.out_dir>/<variant>/seeds/<i>/`, then aggregated into `seeds/aggregate.json`
    (mean, std and interval per metric; refused when their fingerprints differ)."""
    from ganzoo.evaluation.aggregate import aggregate

    seeds_dir = RunPaths.of(cfg).eval_dir / "seeds"
    results = []
    for i, ckpt in enumerate(checkpoints):
        result = evaluate_checkpoint(cfg, Path(ckpt), seeds_dir / str(i))
        results.append({**result, "checkpoint": str(ckpt)})
    summary = aggregate(results, cfg.eval.ci_level)
    atomic_write_text(seeds_dir / "aggregate.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return results, summary

"""Evaluation layer: feature spaces (dataset classifier, rotation net, Inception), sample-quality
metrics with intervals and fingerprints, seed aggregation and image sheets.

Depends only on torch/torchmetrics/scipy (torch-fidelity for Inception) and the layers below
(sampling, training's checkpoint loading, variants, data, config); tracking and orchestration
live elsewhere and call in here.
"""

from ganzoo.evaluation.classifier import ClassifierError, SmallCNN, get_classifier, predict, train_classifier
from ganzoo.evaluation.features import (
    ClassifierFeatures,
    FeatureError,
    InceptionFeatures,
    build_features,
    inception_weights_path,
)
from ganzoo.evaluation.metrics import (
    class_kl,
    compute_image_metrics,
    extract,
    fid,
    fid_interval,
    kid,
    majority_code_purity,
    matched_code_accuracy,
    mode_coverage,
    modes_covered,
    precision_recall,
    quantise,
)
from ganzoo.evaluation.sheets import (
    class_rows,
    interpolation_latents,
    interpolation_strip,
    save_class_sheet,
    save_interpolation_strip,
)

__all__ = [
    "ClassifierError", "SmallCNN", "get_classifier", "predict", "train_classifier",
    "ClassifierFeatures", "FeatureError", "InceptionFeatures", "build_features", "inception_weights_path",
    "class_kl", "compute_image_metrics", "extract", "fid", "fid_interval", "kid",
    "majority_code_purity", "matched_code_accuracy", "mode_coverage", "modes_covered",
    "precision_recall", "quantise",
    "class_rows", "interpolation_latents", "interpolation_strip", "save_class_sheet", "save_interpolation_strip",
]

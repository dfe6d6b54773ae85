"""Metrics and sample sheets for translation variants, on the prepared test split.

All pixel metrics work on images scaled to [0, 1]:
- paired data: `l1` (mean absolute error), `psnr` (the mean over test images of each image's
  PSNR, as the image-translation literature reports it, capped at 100 dB for an exact copy) and
  `ssim` (torchmetrics, mean over images) of A->B translations against their targets;
- variants that translate both ways: `cycle_error_a` = mean |F(G(a)) - a|, `cycle_error_b`;
- with a feature extractor: `fid_<space>`, the Frechet distance between features of translated
  A->B test images and of real B test images, named by its feature space like every FID
  (`fid_classifier` in the evaluation classifier's space);
- with a classifier and source labels: `class_preservation`, the fraction of A->B translations the
  classifier (trained on domain B) assigns the source image's class.
Translations reach the feature network and the classifier quantised to uint8, as real images do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ganzoo.data.images import as_unit_range, save_grid, to_unit_range
from ganzoo.data.prepared import Prepared
from ganzoo.evaluation.classifier import SmallCNN
from ganzoo.evaluation.metrics import fid, quantise

BATCH = 256
PSNR_CAP_DB = 100.0  # an exact copy has infinite PSNR; JSON and means need a number


def psnr_per_image(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N,) PSNR in dB of each image against its target: 10 log10(range^2 / MSE_i), capped."""
    mse = (output.double() - target.double()).square().flatten(1).mean(1)
    psnr = 10 * torch.log10(data_range ** 2 / mse)
    return psnr.clamp(max=PSNR_CAP_DB)


def _two_way(variant) -> bool:
    return "BtoA" in variant.directions


@torch.no_grad()
def _translate(variant, images: torch.Tensor, direction: str) -> torch.Tensor:
    """uint8 or [-1, 1] float NCHW -> float [-1, 1] on the CPU, in batches on the variant's device."""
    out = []
    for i in range(0, images.shape[0], BATCH):
        x = images[i:i + BATCH].to(variant.device)
        x = as_unit_range(x)
        out.append(variant.translate(x, direction).float().cpu())
    return torch.cat(out)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def source_labels(prep: Prepared) -> torch.Tensor | None:
    """Class of each A test image, when the data has labels."""
    return prep.tensors.get("y_test" if prep.kind == "paired" else "y_a_test")


@torch.no_grad()
def _features(fn: Callable, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat([fn(x[i:i + BATCH].to(device)).float().cpu() for i in range(0, x.shape[0], BATCH)])


def _classifier_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def translation_metrics(variant, prep: Prepared, classifier: SmallCNN | None = None,
                        feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        space: str = "classifier") -> dict:
    """Flat dict of metrics (see module docstring). `classifier` maps [-1, 1] images to class
    logits (domain B classes); its `features` serve as `feature_fn` when none is given.
    `feature_fn` takes uint8 or [-1, 1] images; `space` names its metric (fid_<space>)."""
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    t = prep.tensors
    a_test, b_test = t["a_test"], t["b_test"]
    metrics: dict[str, float] = {}
    with variant.sampling():
        fake_b = _translate(variant, a_test, "AtoB")
        if prep.kind == "paired":
            target = _unit(to_unit_range(b_test))
            out = _unit(fake_b)
            metrics["l1"] = float((out - target).abs().mean())
            metrics["psnr"] = float(psnr_per_image(out, target).mean())
            ssim = StructuralSimilarityIndexMeasure(data_range=1.0, sync_on_compute=False)  # never gathers ranks
            metrics["ssim"] = float(ssim(out, target))
        if _two_way(variant):
            fake_a = _translate(variant, b_test, "BtoA")
            rec_a, rec_b = _translate(variant, fake_b, "BtoA"), _translate(variant, fake_a, "AtoB")
            metrics["cycle_error_a"] = float((_unit(rec_a) - _unit(to_unit_range(a_test))).abs().mean())
            metrics["cycle_error_b"] = float((_unit(rec_b) - _unit(to_unit_range(b_test))).abs().mean())
    fake_q = quantise(fake_b)  # what a saved translation holds, and how the real B images come
    if classifier is not None:
        classifier.eval()
        dev = _classifier_device(classifier)
        if feature_fn is None:
            feature_fn = lambda x: classifier.features(as_unit_range(x.to(dev)))  # noqa: E731
        labels = source_labels(prep)
        if labels is not None:
            with torch.no_grad():
                pred = torch.cat([classifier(as_unit_range(fake_q[i:i + BATCH].to(dev))).argmax(1).cpu()
                                  for i in range(0, fake_q.shape[0], BATCH)])
            metrics["class_preservation"] = float((pred == labels.cpu()).float().mean())
    if feature_fn is not None:
        real = _features(feature_fn, b_test, variant.device)
        fake = _features(feature_fn, fake_q, variant.device)
        metrics[f"fid_{space}"] = fid(real, fake)
    return metrics


@torch.no_grad()
def translation_sheet(variant, prep: Prepared, path: str | Path, n: int = 8) -> Path:
    """PNG grid, one test example per row: input | output | target (paired data), then
    | reconstruction for two-way variants; unpaired: a | G(a) | F(G(a)) | b | F(b) | G(F(b))."""
    t = prep.tensors
    a = to_unit_range(t["a_test"][:n])
    b = to_unit_range(t["b_test"][:n])
    with variant.sampling():
        dev = variant.device
        fake_b = variant.translate(a.to(dev), "AtoB").float().cpu()
        cols = [a, fake_b]
        if prep.kind == "paired":
            cols.append(b[:len(a)])
        if _two_way(variant):
            cols.append(variant.translate(fake_b.to(dev), "BtoA").float().cpu())
            if prep.kind != "paired":
                fake_a = variant.translate(b.to(dev), "BtoA").float().cpu()
                cols += [b, fake_a, variant.translate(fake_a.to(dev), "AtoB").float().cpu()]
    rows = min(c.shape[0] for c in cols)
    channels = max(c.shape[1] for c in cols)
    cols = [c[:rows].expand(-1, channels, -1, -1) for c in cols]  # grey next to colour shows as grey
    grid = torch.stack(cols, 1).flatten(0, 1)  # row-major: example i's columns side by side
    return save_grid(grid, path, nrow=len(cols))

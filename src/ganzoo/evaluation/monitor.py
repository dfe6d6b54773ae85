"""The in-loop health monitor (`monitor:` in params.yaml): every `monitor.eval_every` steps the
loop asks it to score a fixed probe set in the evaluation classifier's feature space.

Image synthesis: `monitor.n_probe` samples from fixed noise (and fixed labels / codes for cgan and
infogan, cycling through the classes), scored by
- `probe_coverage`: share of classes holding >= 2% of the samples; `probe_entropy`: entropy of
  the predicted-class histogram over log(classes) (1 = uniform over classes, 0 = one class);
- `probe_fid_classifier`: FID between the probe and as many held real images (noisy at this
  sample size: compare it along one run, not with `ganzoo evaluate`'s fid_classifier);
- `probe_label_accuracy` (cgan), `probe_matched_accuracy` (infogan, Hungarian-matched codes).
Translation: a fixed test batch, `probe_l1` against the targets (paired) and
`probe_class_preservation` (labelled).

Alarms (once each per run): coverage below `monitor.coverage_alarm`, entropy below
`monitor.entropy_alarm` times its best so far ("collapse"), both meaning the generator drifts onto
few classes. The classifier is the cached one of the prepared dataset (`ganzoo classifier`),
trained first when missing; without class labels the monitor is off and says why.

Every monitor carries the fingerprint of its numbers (`fingerprint`, see fingerprint.py: the
classifier's weights hash, the probe's real reference set and size, the probe seed). It is saved in
the checkpoints' monitor record and tagged on the MLflow run (`fingerprint_probe`), so an in-loop
FID is never mistaken for `ganzoo evaluate`'s (a different hash: other sample counts and split).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ganzoo.config import Config
from ganzoo.data.images import grid, to_unit_range
from ganzoo.data.prepared import Prepared
from ganzoo.evaluation import fingerprint
from ganzoo.evaluation.classifier import ClassifierError, SmallCNN, get_classifier, predict
from ganzoo.evaluation.features import ClassifierFeatures
from ganzoo.evaluation.metrics import class_histogram, extract, fid, matched_code_accuracy, mode_coverage
from ganzoo.sampling import generate
from ganzoo.training.monitor import Health

SHEET_SIZE = 64  # the first probe samples, drawn as the fixed-latent sheet


def build_monitor(cfg: Config, prep: Prepared, device) -> tuple[SynthesisMonitor | TranslationMonitor | None, str]:
    """(monitor, what it measures) or (None, why it is off)."""
    if not cfg.monitor.eval_every:
        return None, "monitor off (monitor.eval_every=0)"
    try:
        classifier, acc = get_classifier(prep, cfg.eval, device)
    except ClassifierError as err:
        return None, f"monitor off: {err}"
    if prep.kind == "images":
        mon: SynthesisMonitor | TranslationMonitor = SynthesisMonitor(cfg, prep, classifier, device)
    else:
        mon = TranslationMonitor(cfg, prep, classifier)
    return mon, f"{mon.description} (classifier held-out accuracy {acc:.3f})"


def _probe_fingerprint(classifier: SmallCNN, prep: Prepared, names: list[str], ref_key: str, split: str,
                       ref_count: int, generated: str, seed: int, estimator: str) -> dict:
    desc = ClassifierFeatures(classifier).describe()
    return fingerprint.make(names, extractor=fingerprint.extractor_part(desc),
                            input=fingerprint.input_part(desc, prep.tensors[ref_key].shape[1:]),
                            reference=fingerprint.reference_part(prep, ref_key, split, ref_count, seed),
                            generated=generated, seed=str(seed), estimator=estimator)


def _entropy(pred: torch.Tensor, num_classes: int) -> float:
    p = class_histogram(pred, num_classes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum() / math.log(num_classes))


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _sheet(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """uint8 HWC RGB grid of the first SHEET_SIZE images (what MLflow's image slider shows)."""
    return grid(_rgb(images[:SHEET_SIZE]), nrow=nrow).permute(1, 2, 0).contiguous().numpy()


class SynthesisMonitor:
    def __init__(self, cfg: Config, prep: Prepared, classifier: SmallCNN, device):
        mc = cfg.monitor
        self.n, self.seed = mc.n_probe, mc.seed
        self.coverage_alarm, self.entropy_alarm = mc.coverage_alarm, mc.entropy_alarm
        self.classifier = classifier
        self.features = ClassifierFeatures(classifier)
        self.num_classes = prep.num_classes or int(prep.tensors["y"].max()) + 1
        x = prep.tensors["x"]
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.seed))[:self.n]
        self.real_feats = extract(self.features, x[idx.sort().values], batch_size=500)[0]
        self.best_entropy = 0.0
        names = ["probe_coverage", "probe_entropy", "probe_fid_classifier", "probe_label_accuracy",
                 "probe_matched_accuracy"]
        self.fingerprint = _probe_fingerprint(
            classifier, prep, names, "x", "train", len(idx), f"{self.n} (fixed probe noise)", self.seed,
            "fid: Frechet distance, float64; coverage at 2% of samples; entropy over log(classes); "
            "infogan: Hungarian-matched codes")
        self.description = (f"monitor: {self.n} probe samples every {mc.eval_every} steps, "
                            f"classifier features (fid vs {len(idx)} real images), alarms at coverage < "
                            f"{mc.coverage_alarm:g} or entropy < {mc.entropy_alarm:g} x best; "
                            f"fingerprint {self.fingerprint['hash']}")

    def state_dict(self) -> dict:
        return {"best_entropy": self.best_entropy}

    def load_state_dict(self, state: dict) -> None:
        self.best_entropy = float(state.get("best_entropy", 0.0))

    def _probe(self, variant) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fixed probe: the same noise every time; cgan cycles labels, infogan cycles `cat`."""
        k = self.num_classes
        if variant.takes_labels:
            labels = torch.arange(self.n) % k
            return generate(variant, self.n, seed=self.seed, labels=labels), labels
        if variant.takes_codes:
            per = -(-self.n // variant.n_cat)
            parts = [generate(variant, per, seed=self.seed + c, codes={"cat": c}) for c in range(variant.n_cat)]
            cats = torch.arange(variant.n_cat).repeat_interleave(per)
            return torch.cat(parts)[:self.n], cats[:self.n]
        return generate(variant, self.n, seed=self.seed), None

    def check(self, variant, step: int) -> Health:
        images, condition = self._probe(variant)
        feats, pred = extract(self.features, images, batch_size=500)  # one pass: features and classes
        assert pred is not None
        metrics = {"probe_coverage": mode_coverage(pred, self.num_classes),
                   "probe_entropy": _entropy(pred, self.num_classes),
                   "probe_fid_classifier": fid(self.real_feats, feats)}
        if variant.takes_labels and condition is not None:
            metrics["probe_label_accuracy"] = float(pred.eq(condition).float().mean())
        if variant.takes_codes and condition is not None:
            metrics["probe_matched_accuracy"] = matched_code_accuracy(condition, pred, variant.n_cat,
                                                                      self.num_classes)
        alarm = None
        if metrics["probe_coverage"] < self.coverage_alarm:
            alarm = (f"collapse: {metrics['probe_coverage']:.0%} of classes covered (alarm below "
                     f"{self.coverage_alarm:.0%})")
        elif self.best_entropy and metrics["probe_entropy"] < self.entropy_alarm * self.best_entropy:
            alarm = (f"collapse: class entropy {metrics['probe_entropy']:.2f}, down from its best "
                     f"{self.best_entropy:.2f}")
        self.best_entropy = max(self.best_entropy, metrics["probe_entropy"])
        return Health(step, metrics, "probe_fid_classifier", False, alarm, _sheet(images), self.fingerprint)


class TranslationMonitor:
    def __init__(self, cfg: Config, prep: Prepared, classifier: SmallCNN):
        t = prep.tensors
        n = min(cfg.monitor.n_probe, t["a_test"].shape[0])
        self.a = to_unit_range(t["a_test"][:n])
        self.b = to_unit_range(t["b_test"][:n]) if prep.kind == "paired" else None
        labels = t.get("y_test" if prep.kind == "paired" else "y_a_test")
        self.labels = labels[:n] if labels is not None else None
        self.classifier = classifier
        self.primary = "probe_l1" if self.b is not None else "probe_class_preservation"
        # probe_l1 is on pixels; the classifier judges class preservation: both are named here.
        self.fingerprint = _probe_fingerprint(
            classifier, prep, ["probe_l1", "probe_class_preservation"], "a_test", "test", n,
            f"{n} (the first test inputs, translated A->B)", cfg.monitor.seed,
            "probe_l1: mean |G(a) - b| on [0, 1] pixels; probe_class_preservation: classifier argmax vs a's label")
        self.description = (f"monitor: {n} fixed test inputs every {cfg.monitor.eval_every} steps ({self.primary}); "
                            f"fingerprint {self.fingerprint['hash']}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def check(self, variant, step: int) -> Health:
        out = torch.cat([variant.translate(self.a[i:i + 256].to(variant.device), "AtoB").float().cpu()
                         for i in range(0, self.a.shape[0], 256)])
        metrics: dict[str, float] = {}
        if self.b is not None:
            metrics["probe_l1"] = float(((out - self.b).abs() / 2).mean())  # on [0, 1] pixels
        if self.labels is not None:
            metrics["probe_class_preservation"] = float((predict(self.classifier, out) == self.labels).float().mean())
        if self.primary not in metrics:  # unpaired and unlabelled: nothing to rank by
            metrics[self.primary] = float("nan")
        return Health(step, metrics, self.primary, self.primary == "probe_class_preservation", None,
                      _sheet(torch.cat([_rgb(self.a[:8]), _rgb(out[:8])]), nrow=min(8, out.shape[0])),
                      self.fingerprint)

"""Sample-quality metrics: pure functions over feature tensors, plus one driver over images.

FID goes through torchmetrics (float64; its trace of the matrix square root is the eigenvalue
form pytorch-fid and torch-fidelity use). KID is written here to be torch-fidelity's estimator
exactly: the same subsets (numpy RandomState(seed), real then fake indices, without replacement),
the cubic polynomial kernel (x.y / d + 1)^3, unbiased MMD^2, mean and population std over the
subsets; only the arithmetic is float64 instead of float32. The kernel's offset 1 and its 1/d
assume Inception-scale features (pool3 averages of ReLUs, around 0.1-1): a space whose features
are much larger (ganzoo's SmallCNN spaces reach an rms of 6 on digits, 43 on the photo task) turns
the kernel into ~(x.y/d)^3 with values near 1e8, and KID into third-moment noise (+-1e9 between
two halves of one real set). `kid(scale=s)` divides the features by s first (the extractor's
`kid_scale`; Inception's is 1, so its KID stays torch-fidelity's). Features are fed through an identity
module so any feature space works and the extractor runs once for all metrics.
Precision/recall (Kynkaanniemi et al., 2019) and the class-histogram metrics are small enough
to write here.

Images reach the extractor through one input pipeline: float images (a generator's [-1, 1]
output) are quantised to uint8 first, exactly as a saved sample would be and as the real images
already are, so a metric never rewards or punishes sub-quantum differences between the two sets.

Everything is deterministic: KID's subsets and the FID bootstrap come from fixed seeds in
generators of their own, so equal inputs give equal numbers and the caller's RNG is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ganzoo.data.images import as_unit_range, to_uint8

Images = torch.Tensor | Iterable[torch.Tensor]  # a tensor, or batches of one (e.g. from a generator)


class _Identity(nn.Module):
    """Features in, features out: lets torchmetrics' FID consume precomputed features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def quantise(images: torch.Tensor) -> torch.Tensor:
    """The one input pipeline for metrics: uint8 stays, float [-1, 1] is rounded to uint8."""
    return images if images.dtype == torch.uint8 else to_uint8(images)


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"need at least 2 real and 2 fake samples, got {real.shape[0]} and {fake.shape[0]}")


def fid(real_feats: torch.Tensor, fake_feats: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets (torchmetrics, float64)."""
    _check_pair(real_feats, fake_feats)
    # sync_on_compute=False: the features are already complete here. Under torchrun torchmetrics
    # would otherwise gather states from every rank at compute(), and the training monitor runs on
    # rank 0 alone, so the other ranks never join: a deadlock.
    metric = FrechetInceptionDistance(feature=_Identity(real_feats.shape[1]), sync_on_compute=False)
    metric.update(real_feats.detach().cpu().double(), real=True)
    metric.update(fake_feats.detach().cpu().double(), real=False)
    # Rounding can push a true 0 slightly below; the distance itself is never negative.
    return max(float(metric.compute()), 0.0)


def _poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid(real_feats: torch.Tensor, fake_feats: torch.Tensor, subset_size: int = 1000,
        subsets: int = 100, seed: int = 0, scale: float = 1.0) -> tuple[float, float]:
    """Kernel inception distance over random subsets -> (mean, std), as torch-fidelity computes it,
    on features divided by `scale` (1: torch-fidelity's numbers exactly)."""
    _check_pair(real_feats, fake_feats)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"KID's feature scale must be a positive finite number, got {scale}")
    real, fake = real_feats.detach().cpu().double() / scale, fake_feats.detach().cpu().double() / scale
    m = min(subset_size, real.shape[0], fake.shape[0])
    rng = np.random.RandomState(seed)
    mmds = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        a = real[torch.from_numpy(rng.choice(real.shape[0], m, replace=False))]
        b = fake[torch.from_numpy(rng.choice(fake.shape[0], m, replace=False))]
        k_aa, k_bb, k_ab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
        within = k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()
        mmds[i] = within / (m * (m - 1)) - 2 * k_ab.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std(correction=0))


def _cov(x: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of rows of x, row i counted weights[i] times (a bootstrap draw)."""
    n = x.shape[0] if weights is None else float(weights.sum())
    w = torch.ones(x.shape[0], dtype=x.dtype) if weights is None else weights.to(x.dtype)
    mu = (w @ x) / n
    cov = (x.T * w) @ x - n * torch.outer(mu, mu)
    return mu, cov / (n - 1)


class _ResampledFid:
    """FID of the real set against re-weighted generated sets (row i drawn counts[i] times).

    tr sqrt(S_r S_f) = tr sqrt(A S_f A) with A = S_r^(1/2): a symmetric eigenproblem per draw,
    and A S_f A is just the covariance of the generated features projected by A, once. The
    per-draw O(n d^2) covariance runs in `dtype` (float32 by default: twice as fast, and ~1e-6
    relative error is far below the interval's width); means, traces and A stay float64.
    """

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, dtype: torch.dtype = torch.float32):
        self.mu_r, cov_r = _cov(real)
        evals, evecs = torch.linalg.eigh(cov_r)
        root = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T
        self.tr_r, self.fake, self.fake_sq = cov_r.trace(), fake, fake.square()
        # Centred first, so the float32 covariance does not subtract two large numbers.
        self.proj = ((fake - fake.mean(0)) @ root).to(dtype)

    def __call__(self, counts: torch.Tensor) -> float:
        drawn = counts.nonzero().squeeze(1)  # ~37% of rows are not drawn: skip them in the O(n d^2) step
        w = counts[drawn].to(self.fake.dtype)
        n = float(w.sum())
        mu_f = (w @ self.fake[drawn]) / n
        var_f = ((w @ self.fake_sq[drawn]) - n * mu_f.square()) / (n - 1)  # tr S_f needs the diagonal only
        _, cov_p = _cov(self.proj[drawn], w.to(self.proj.dtype))
        tr_sqrt = torch.linalg.eigvalsh(cov_p.double()).clamp(min=0).sqrt().sum()
        return float((self.mu_r - mu_f).square().sum() + self.tr_r + var_f.sum() - 2 * tr_sqrt)


def fid_interval(real_feats: torch.Tensor, fake_feats: torch.Tensor, reps: int = 200, level: float = 0.95,
                 seed: int = 0, point: float | None = None) -> tuple[float, float]:
    """Bootstrap interval of FID over the generated samples (the reference set is held fixed).

    Each replicate redraws the generated features with replacement and recomputes FID. Resampling
    adds its own small-sample bias (FID of n draws with repeats is larger than of n distinct
    ones), so the replicates' spread around their own mean is moved onto the point estimate:
    [fid + q_lo - mean, fid + q_hi - mean], clipped at 0. The width is the sampling noise of an
    FID from this many generated samples, which is what two models evaluated alike differ by
    when they are equally good.
    """
    _check_pair(real_feats, fake_feats)
    if reps < 2:
        raise ValueError(f"a bootstrap needs at least 2 replicates, got {reps}")
    resampled = _ResampledFid(real_feats.detach().cpu().double(), fake_feats.detach().cpu().double())
    gen = torch.Generator().manual_seed(seed)
    n = fake_feats.shape[0]
    values = torch.tensor([resampled(torch.bincount(torch.randint(n, (n,), generator=gen), minlength=n))
                           for _ in range(reps)], dtype=torch.float64)
    centre = float(values.mean())
    point = fid(real_feats, fake_feats) if point is None else point
    alpha = (1 - level) / 2
    lo, hi = torch.quantile(values, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return max(point + lo - centre, 0.0), max(point + hi - centre, 0.0)


def _kth_nn_radius(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded)."""
    k = min(k, feats.shape[0] - 1)
    radii = []
    for i in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[i:i + chunk], feats)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # column 0 is the point itself
    return torch.cat(radii)


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3,
                     chunk: int = 1000) -> tuple[float, float]:
    """Improved precision/recall (Kynkaanniemi et al. 2019) from k-NN balls.

    precision: share of fake samples inside some real sample's k-NN ball (fidelity);
    recall: share of real samples inside some fake sample's k-NN ball (diversity).
    """
    _check_pair(real_feats, fake_feats)
    real, fake = real_feats.detach().cpu().float(), fake_feats.detach().cpu().float()
    r_real, r_fake = _kth_nn_radius(real, k, chunk), _kth_nn_radius(fake, k, chunk)
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.bool)
    real_in_fake = torch.zeros(real.shape[0], dtype=torch.bool)
    for i in range(0, fake.shape[0], chunk):  # one fake x real distance pass serves both
        d = torch.cdist(fake[i:i + chunk], real)
        fake_in_real[i:i + chunk] = (d <= r_real[None, :]).any(dim=1)
        real_in_fake |= (d <= r_fake[i:i + chunk, None]).any(dim=0)
    return float(fake_in_real.float().mean()), float(real_in_fake.float().mean())


# --------------------------------------------------------------------------- class histograms

def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels.long().cpu().flatten(), minlength=num_classes)[:num_classes].double()


def modes_covered(pred_labels: torch.Tensor, num_classes: int, threshold: float = 0.02) -> int:
    """Number of classes that receive at least `threshold` of the generated samples."""
    hist = class_histogram(pred_labels, num_classes)
    return int((hist / max(hist.sum().item(), 1.0) >= threshold).sum())


def mode_coverage(pred_labels: torch.Tensor, num_classes: int, threshold: float = 0.02) -> float:
    """Fraction of classes that receive at least `threshold` of the generated samples (1.0: all)."""
    return modes_covered(pred_labels, num_classes, threshold) / num_classes


def class_kl(pred_labels: torch.Tensor, real_labels: torch.Tensor, num_classes: int, eps: float = 1e-6) -> float:
    """KL(fake || real) between class histograms, both smoothed by `eps` so empty classes stay finite.

    This direction charges for fake mass where the real data has little; a generator that emits a
    single class c scores about log(1 / p_real(c)) (~2.3 for 10 balanced classes), a faithful one ~0.
    """
    p = class_histogram(pred_labels, num_classes) + eps
    q = class_histogram(real_labels, num_classes) + eps
    p, q = p / p.sum(), q / q.sum()
    return max(float((p * (p / q).log()).sum()), 0.0)


# --------------------------------------------------------------------------- latent codes vs classes

def code_class_table(codes: torch.Tensor, classes: torch.Tensor, n_codes: int, n_classes: int) -> torch.Tensor:
    """(n_codes, n_classes) counts: row k, column c = samples drawn with code k judged class c."""
    codes, classes = codes.long().cpu().flatten(), classes.long().cpu().flatten()
    if codes.shape != classes.shape:
        raise ValueError(f"one class per code needed, got {codes.numel()} codes and {classes.numel()} classes")
    if codes.numel() and (codes.min() < 0 or codes.max() >= n_codes or classes.min() < 0 or classes.max() >= n_classes):
        raise ValueError(f"codes must lie in [0, {n_codes}) and classes in [0, {n_classes})")
    flat = torch.bincount(codes * n_classes + classes, minlength=n_codes * n_classes)
    return flat.view(n_codes, n_classes)


def matched_code_accuracy(codes: torch.Tensor, classes: torch.Tensor, n_codes: int, n_classes: int) -> float:
    """InfoGAN's categorical-code accuracy as the paper scores it ("5% error" on MNIST): the
    share of samples whose class is the one their code is matched to, under the best
    one-to-one matching of codes to classes (Hungarian assignment on the code x class table).

    Unlike a per-code majority vote, two codes cannot claim the same class: a generator that
    ignores its code and draws one digit scores 1/n_classes, not 1.0. With more codes than
    classes (or fewer), the unmatched ones count as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    table = code_class_table(codes, classes, n_codes, n_classes)
    total = int(table.sum())
    if total == 0:
        raise ValueError("no samples to score")
    rows, cols = linear_sum_assignment(table.numpy(), maximize=True)
    return float(table[rows, cols].sum()) / total


def majority_code_purity(codes: torch.Tensor, classes: torch.Tensor, n_codes: int, n_classes: int) -> float:
    """Mean over codes of the share of a code's samples in its most frequent class. Codes may share
    a class, so a generator that ignores its code and draws one digit scores 1.0: a purity, not
    the paper's accuracy (see matched_code_accuracy). Codes without samples are skipped."""
    table = code_class_table(codes, classes, n_codes, n_classes).double()
    per_code = table.sum(1)
    used = per_code > 0
    if not used.any():
        raise ValueError("no samples to score")
    return float((table.max(1).values[used] / per_code[used]).mean())


# --------------------------------------------------------------------------- images -> metrics

def _batches(images: Images, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size]
    else:
        yield from images


@torch.no_grad()
def extract(extractor: nn.Module, images: Images, batch_size: int = 500,
            classifier: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quantise, then run the extractor (and classifier, if any) batch by batch ->
    (features on CPU, predicted labels)."""
    inner = getattr(extractor, "classifier", None) if getattr(extractor, "judges_classes", False) else None
    # Classifier features: the logits are one linear layer away, no second pass needed.
    head = getattr(inner, "head", None) if classifier is None or classifier is inner else None
    feats, preds = [], []
    for batch in _batches(images, batch_size):
        x = quantise(batch)
        f = extractor(x)
        feats.append(f.float().cpu())
        if head is not None:
            preds.append(head(f).argmax(1).cpu())
        elif classifier is not None:
            dev = next(classifier.parameters()).device
            preds.append(classifier(as_unit_range(x.to(dev))).argmax(1).cpu())
    return torch.cat(feats), (torch.cat(preds) if preds else None)


def _num_classes(extractor: nn.Module, classifier: nn.Module | None) -> int | None:
    model = classifier
    if model is None and getattr(extractor, "judges_classes", False):
        model = getattr(extractor, "classifier", None)
    arch = getattr(model, "arch", None)
    return arch["num_classes"] if arch else None


def feature_metric_names(suffix: str, with_interval: bool) -> list[str]:
    """The keys compute_image_metrics writes for feature space `suffix` (one metric family)."""
    names = [f"fid_{suffix}", f"kid_{suffix}_mean", f"kid_{suffix}_std", f"precision_{suffix}", f"recall_{suffix}"]
    return names + ([f"fid_{suffix}_ci_low", f"fid_{suffix}_ci_high"] if with_interval else [])


CLASS_METRICS = ("mode_coverage", "modes_covered", "class_kl")


def compute_image_metrics(extractor: nn.Module, real_images: Images, fake_images: Images,
                          batch_size: int = 500, suffix: str = "classifier",
                          classifier: nn.Module | None = None, num_classes: int | None = None,
                          kid_subset_size: int = 1000, kid_subsets: int = 100, pr_k: int = 3,
                          seed: int = 0, coverage_threshold: float = 0.02,
                          bootstrap: int = 0, ci_level: float = 0.95,
                          kid_scale: float | None = None) -> dict[str, float]:
    """Images (uint8 or [-1, 1] float, tensors or batch iterables) -> flat dict of metrics.

    Class metrics need a classifier: `classifier`, or the one inside ClassifierFeatures. The
    reference class histogram is the classifier's predictions on the real images, so its own
    errors appear on both sides and cancel instead of counting against the generator. Without
    one they are absent, never zero. `bootstrap` > 0 adds FID's interval (fid_<suffix>_ci_low/high).
    KID's features are divided by `kid_scale`, by default the extractor's own (1 when it has none).
    """
    real_f, real_pred = extract(extractor, real_images, batch_size, classifier)
    fake_f, fake_pred = extract(extractor, fake_images, batch_size, classifier)
    for name, f in (("real", real_f), ("fake", fake_f)):
        if not torch.isfinite(f).all():
            raise ValueError(f"{name} images give non-finite features; check them for NaN/inf (diverged generator?)")
    scale = float(getattr(extractor, "kid_scale", 1.0)) if kid_scale is None else kid_scale
    kid_mean, kid_std = kid(real_f, fake_f, kid_subset_size, kid_subsets, seed, scale)
    precision, recall = precision_recall(real_f, fake_f, pr_k)
    fid_value = fid(real_f, fake_f)
    out = {
        f"fid_{suffix}": fid_value,
        f"kid_{suffix}_mean": kid_mean,
        f"kid_{suffix}_std": kid_std,
        f"precision_{suffix}": precision,
        f"recall_{suffix}": recall,
    }
    if bootstrap:
        low, high = fid_interval(real_f, fake_f, bootstrap, ci_level, seed, point=fid_value)
        out.update({f"fid_{suffix}_ci_low": low, f"fid_{suffix}_ci_high": high})
    n_cls = num_classes or _num_classes(extractor, classifier)
    if fake_pred is not None and real_pred is not None and n_cls:
        out["mode_coverage"] = mode_coverage(fake_pred, n_cls, coverage_threshold)
        out["modes_covered"] = float(modes_covered(fake_pred, n_cls, coverage_threshold))
        out["class_kl"] = class_kl(fake_pred, real_pred, n_cls)
    return out

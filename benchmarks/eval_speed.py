"""Time compute_image_metrics: 10,000 fake vs 10,000 real 32x32 MNIST-like images on CPU,
including FID's bootstrap interval, and the bootstrap's own cost.

    .venv/bin/python -m benchmarks.eval_speed [--n 10000] [--threads 2] [--bootstrap 200] [--classifier-dir DIR]

Real images are the MNIST test split from ../shared/datasets/mnist (gzip IDX, read directly),
or sklearn's digits upsampled and tiled when that copy is absent. The "fake" set is the real one
shifted by a pixel with a little noise, as float [-1, 1] like a generator's output. Only the
metric computation is timed (feature extraction with quantisation, FID, KID, precision/recall,
class metrics and the --bootstrap replicates of FID's interval); the classifier is trained (or
loaded) first. The bootstrap is then timed alone on the same features. Target: < 60 s.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import common
from ganzoo.data.prepared import Prepared, content_hash
from ganzoo.evaluation import build_features, compute_image_metrics, extract
from ganzoo.evaluation.metrics import fid_interval

MNIST_RAW = common.SHARED_MNIST / "MNIST" / "raw"


def read_idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    ndim = data[3]
    dims = np.frombuffer(data[4:4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def load_real(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    images, labels = MNIST_RAW / "t10k-images-idx3-ubyte.gz", MNIST_RAW / "t10k-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        x = torch.from_numpy(read_idx(images).copy())[:, None]
        y = torch.from_numpy(read_idx(labels).astype(np.int64))
        x = F.pad(x, (2, 2, 2, 2))  # 28 -> 32, as torchvision's Pad(2) would
        source = "mnist"
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
        x = (F.interpolate(x, size=32, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
        y = torch.tensor(d.target, dtype=torch.long)
        source = "digits"
    reps = -(-n // x.shape[0])
    return x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n], source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--classifier-steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--bootstrap", type=int, default=200, help="FID interval replicates (eval.bootstrap)")
    ap.add_argument("--classifier-dir", default=None, help="cache the classifier here (default: a temp dir)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x, y, source = load_real(args.n)
    tensors = {"x": x, "y": y}
    prep = Prepared("images", tensors, {"classes": [str(i) for i in range(10)], "content_hash": content_hash(tensors)})
    gen = torch.Generator().manual_seed(0)
    fake = torch.roll(x, shifts=1, dims=-1).float().div(127.5).sub(1)
    fake = (fake + 0.05 * torch.randn(fake.shape, generator=gen)).clamp(-1, 1)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = types.SimpleNamespace(classifier_dir=args.classifier_dir or tmp, classifier_steps=args.classifier_steps,
                                    inception_weights=None)
        t0 = time.perf_counter()
        extractor, suffix, info = build_features("classifier", prep, cfg, "cpu")
        t_clf = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = compute_image_metrics(extractor, x, fake, batch_size=args.batch_size, suffix=suffix,
                                        kid_subset_size=1000, kid_subsets=100, pr_k=3, seed=0,
                                        bootstrap=args.bootstrap)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        real_f, _ = extract(extractor, x, args.batch_size)
        fake_f, _ = extract(extractor, fake, args.batch_size)
        t0, c0 = time.perf_counter(), time.process_time()
        if args.bootstrap:
            fid_interval(real_f, fake_f, args.bootstrap, seed=0)
        boot_s, boot_cpu = time.perf_counter() - t0, time.process_time() - c0

    print(f"data: {source}, {args.n} real vs {args.n} fake, {tuple(x.shape[1:])}, threads={torch.get_num_threads()}")
    print(f"classifier: {args.classifier_steps} steps in {t_clf:.1f}s, "
          f"held-out accuracy {info['classifier_accuracy']:.4f}")
    print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    # CPU seconds too: on a shared machine wall time mostly measures the neighbours.
    print(f"compute_image_metrics (bootstrap {args.bootstrap}): {seconds:.2f} s wall, {cpu:.2f} s CPU")
    print(f"of which the FID bootstrap alone: {boot_s:.2f} s wall, {boot_cpu:.2f} s CPU "
          f"({1000 * boot_s / max(args.bootstrap, 1):.0f} ms per replicate)")


if __name__ == "__main__":
    main()

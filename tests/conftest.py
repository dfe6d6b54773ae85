"""Shared fixtures. Real datasets live outside the repo, in ../shared/datasets (see its README)."""

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def shared_mnist_root() -> Path:
    """torchvision-style MNIST root (MNIST/raw/t10k-*.gz); the test is skipped where it is absent."""
    root = SHARED_DATASETS / "mnist"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared MNIST not found at {root}")
    return root


# --------------------------------------------------------------------------- tiny data for fast CPU runs
import torch  # noqa: E402

from ganzoo.data.prepared import Prepared  # noqa: E402


def make_prepared(kind: str = "images", n: int = 24, size: int = 16, channels: int = 1,
                  classes: int = 10, seed: int = 0) -> Prepared:
    """Random uint8 images in the prepared format (labels for `images`, pairs for translation)."""
    g = torch.Generator().manual_seed(seed)

    def imgs(c=channels, m=n):
        return torch.randint(0, 256, (m, c, size, size), generator=g, dtype=torch.uint8)

    manifest = {"source": "synthetic", "classes": [str(i) for i in range(classes)], "content_hash": f"syn{seed}"}
    if kind == "images":
        y = torch.arange(n) % classes
        return Prepared("images", {"x": imgs(), "y": y}, manifest)
    tensors = {"a": imgs(), "b": imgs(), "a_test": imgs(m=4), "b_test": imgs(m=4)}
    return Prepared(kind, tensors, manifest)


@pytest.fixture
def tiny_prepared():
    return make_prepared


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder so relative outputs (checkpoints/, metrics/, data/) land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- gpu marker
def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests need CUDA; skip them (with the reason) where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu); no CUDA device here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- threads
def pytest_configure(config):
    """One intra-op thread for in-process tests: their tensors are tiny, and two threads on a
    2-core CI machine mostly wait on each other. Subprocess tests keep torch's default."""
    torch.set_num_threads(1)

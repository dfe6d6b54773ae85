"""Shared fixtures. Real datasets live outside the repo, in ../shared/datasets (see its README)."""

from pathlib import Path

import pytest
import torch

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def shared_mnist_root() -> Path:
    """torchvision-style MNIST root (MNIST/raw/t10k-*.gz); the test is skipped where it is absent."""
    root = SHARED_DATASETS / "mnist"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared MNIST not found at {root}")
    return root


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

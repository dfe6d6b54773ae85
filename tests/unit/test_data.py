"""Data sources and `prepare_data`: shapes, labels, manifests and one-line errors (fast, CPU)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.config import DataConfig
from ganzoo.data.prepare import prepare_data
from ganzoo.data.prepared import load_prepared, prepared_path
from ganzoo.data.sources import load_images
from ganzoo.errors import DataError


def cfg(tmp_path, **kw) -> DataConfig:
    kw.setdefault("prepared_dir", str(tmp_path / "prepared"))
    kw.setdefault("source", "digits")
    return DataConfig(**kw)


def save_png(path, size=(12, 12), mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "I;16") else (value, 255 - value, 0)
    Image.new(mode, size, colour).save(path)
    return path


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        save_png(root / "cat" / f"{i}.png", size=(20, 14), mode="RGB", value=10 * i)
    for i in range(2):
        save_png(root / "dog" / f"{i}.jpg", size=(9, 9), mode="RGB", value=200)
    (root / "empty").mkdir()
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------- digits

def test_digits_prepare(tmp_path):
    c = cfg(tmp_path)
    prep = prepare_data(c, batch_size=64)
    x, y = prep.tensors["x"], prep.tensors["y"]
    assert x.shape == (1797, 1, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert x.max() > 200 and x.min() == 0  # 0..16 was scaled to 0..255
    m = json.loads((prepared_path(c) / "manifest.json").read_text())
    for key in ("source", "root", "image_size", "channels", "classes", "origin", "content_hash"):
        assert key in m
    assert (m["source"], m["image_size"], m["channels"], m["count"]) == ("digits", 32, 1, 1797)
    assert m["classes"] == [str(i) for i in range(10)]
    loaded = load_prepared(prepared_path(c))
    assert torch.equal(loaded.tensors["x"], x) and loaded.num_classes == 10


def test_digits_hash_stable(tmp_path):
    a = prepare_data(cfg(tmp_path / "a")).manifest["content_hash"]
    b = prepare_data(cfg(tmp_path / "b")).manifest["content_hash"]
    assert a == b


def test_digits_native_values():
    raw = load_images(DataConfig(source="digits"))
    assert raw.images.shape == (1797, 1, 8, 8) and raw.images.max() == 255


def test_limit_and_image_size_64(tmp_path):
    prep = prepare_data(cfg(tmp_path, limit=100, image_size=64))
    assert prep.tensors["x"].shape == (100, 1, 64, 64)
    assert prep.tensors["y"].shape == (100,)
    assert prepared_path(cfg(tmp_path, image_size=64)).name == "digits-64"


def test_channels_one_to_three(tmp_path):
    x = prepare_data(cfg(tmp_path, channels=3, limit=10)).tensors["x"]
    assert x.shape == (10, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 2])


def test_too_few_images_for_batch(tmp_path):
    with pytest.raises(DataError, match=r"only 10 images in digits.*train\.batch_size=64"):
        prepare_data(cfg(tmp_path, limit=10), batch_size=64)
    assert not prepared_path(cfg(tmp_path)).exists()  # nothing written


def test_failed_prepare_keeps_existing(tmp_path):
    c = cfg(tmp_path)
    prepare_data(c)
    out = prepared_path(c)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError):
        prepare_data(cfg(tmp_path, limit=5), batch_size=64)  # same output folder, fails
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --------------------------------------------------------------------------- MNIST (IDX)

def test_shared_mnist(tmp_path, shared_mnist_root):
    prep = prepare_data(cfg(tmp_path, source="mnist", root=str(shared_mnist_root)), batch_size=64)
    x, y = prep.tensors["x"], prep.tensors["y"]
    assert x.shape == (10000, 1, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "t10k-images-idx3-ubyte.gz" in prep.manifest["origin"]


@pytest.mark.parametrize("sub", ["", "MNIST", "MNIST/raw"])
def test_shared_mnist_root_variants(shared_mnist_root, sub):
    raw = load_images(DataConfig(source="mnist", root=str(shared_mnist_root / sub), download=False))
    assert raw.images.shape == (10000, 1, 28, 28)
    assert abs(raw.images.float().mean().item() - 33.79) < 0.01  # README's mean pixel value


def write_idx(path, arr: np.ndarray, compress=True):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)


def test_fashion_mnist_uncompressed_train_split(tmp_path):
    raw_dir = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw_dir / "train-images-idx3-ubyte", np.full((5, 28, 28), 7), compress=False)
    write_idx(raw_dir / "train-labels-idx1-ubyte", np.arange(5), compress=False)
    raw = load_images(DataConfig(source="fashion_mnist", root=str(tmp_path), download=False))
    assert raw.images.shape == (5, 1, 28, 28) and raw.labels.tolist() == [0, 1, 2, 3, 4]
    assert raw.classes[0] == "T-shirt/top"


def test_mnist_missing_files_lists_them(tmp_path):
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*MNIST/raw.*set data\.root"):
        load_images(DataConfig(source="mnist", root=str(tmp_path), download=False))


def test_mnist_download_failure(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(DataError, match=r"download failed.*set data\.root"):
        load_images(DataConfig(source="mnist", root=str(tmp_path), download=True))


def test_mnist_labels_missing(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz has no labels file"):
        load_images(DataConfig(source="mnist", root=str(tmp_path), download=False))


def test_mnist_corrupt_gz(tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    (raw_dir).mkdir(parents=True)
    (raw_dir / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    write_idx(raw_dir / "t10k-labels-idx1-ubyte.gz", np.arange(3))
    with pytest.raises(DataError, match=r"cannot read .*t10k-images-idx3-ubyte\.gz"):
        load_images(DataConfig(source="mnist", root=str(tmp_path), download=False))


# --------------------------------------------------------------------------- folders

def test_class_folder(tmp_path, class_folder):
    prep = prepare_data(cfg(tmp_path, source="folder", root=str(class_folder), image_size=16))
    x, y = prep.tensors["x"], prep.tensors["y"]
    assert x.shape == (5, 3, 16, 16) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 0, 1, 1]
    assert prep.manifest["classes"] == ["cat", "dog"]  # empty sub-folder is no class
    assert x[3, 0].float().mean() > 190  # the 9x9 red-ish jpg, upsampled


def test_flat_folder_unlabelled(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        save_png(root / f"{i}.png", size=(40, 30), value=50 * i)
    prep = prepare_data(cfg(tmp_path, source="folder", root=str(root), image_size=8))
    assert prep.tensors["x"].shape == (4, 1, 8, 8)
    assert "y" not in prep.tensors and prep.manifest["classes"] is None
    assert prep.tensors["x"][:, 0, 0, 0].tolist() == [0, 50, 100, 150]


def test_folder_16bit_grayscale_rescaled(tmp_path):
    root = tmp_path / "deep"
    save_png(root / "a.png", mode="I;16", value=65535)
    x = load_images(DataConfig(source="folder", root=str(root), image_size=8)).images
    assert x.shape == (1, 1, 8, 8) and int(x.min()) == 255


def test_folder_corrupt_file(tmp_path):
    root = tmp_path / "bad"
    save_png(root / "ok.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        prepare_data(cfg(tmp_path, source="folder", root=str(root)))


def test_folder_truncated_file(tmp_path):
    root = tmp_path / "bad"
    good = save_png(root / "ok.png", size=(64, 64), mode="RGB")
    Image.effect_noise((64, 64), 50).save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:200])
    assert good.exists()
    with pytest.raises(DataError, match=r"cut\.png"):
        load_images(DataConfig(source="folder", root=str(root), channels=1))


def test_folder_empty(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images .*empty"):
        prepare_data(cfg(tmp_path, source="folder", root=str(tmp_path / "empty")))


def test_folder_missing(tmp_path):
    with pytest.raises(DataError, match=r"data\.root=.*nowhere.*not an existing folder"):
        prepare_data(cfg(tmp_path, source="folder", root=str(tmp_path / "nowhere")))


def test_folder_mixed_channels(tmp_path):
    root = tmp_path / "mixed"
    save_png(root / "gray.png", mode="L")
    save_png(root / "colour.png", mode="RGB")
    # One rule for every folder reader: any colour image makes the set colour (grey -> RGB loses nothing).
    mixed = prepare_data(cfg(tmp_path, source="folder", root=str(root))).tensors["x"]
    assert mixed.shape == (2, 3, 32, 32)
    grey = mixed[list(sorted(p.name for p in root.iterdir())).index("gray.png")]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    for ch in (1, 3):
        x = prepare_data(cfg(tmp_path, source="folder", root=str(root), channels=ch)).tensors["x"]
        assert x.shape == (2, ch, 32, 32)


def test_folder_limit_and_batch(tmp_path, class_folder):
    c = cfg(tmp_path, source="folder", root=str(class_folder), limit=4)
    assert prepare_data(c).tensors["x"].shape[0] == 4
    with pytest.raises(DataError, match=r"only 5 images in folder \(.*imgs\).*batch_size=8"):
        prepare_data(cfg(tmp_path, source="folder", root=str(class_folder)), batch_size=8)


# --------------------------------------------------------------------------- other sources

def test_cifar10_missing_offline(tmp_path):
    with pytest.raises(DataError, match=r"cifar10.*set data\.root"):
        load_images(DataConfig(source="cifar10", root=str(tmp_path), download=False))


def test_translation_source_via_prepare(tmp_path):
    c = cfg(tmp_path, source="digits_paired")
    with pytest.raises(DataError, match=r"translation source"):
        load_images(c)
    try:
        import ganzoo.data.translation  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(DataError, match=r"digits_paired.*not available"):
            prepare_data(c)


def test_translation_builder_dispatch(tmp_path, monkeypatch):
    import ganzoo.data.prepare as prepare_mod
    from ganzoo.data.prepared import Prepared

    def build(data_cfg):
        a = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
        return Prepared(kind="paired", tensors={"a": a, "b": a + 1}, manifest={"origin": "fake"})
    monkeypatch.setitem(prepare_mod.TRANSLATION_BUILDERS, "digits_paired", build)
    c = cfg(tmp_path, source="digits_paired", image_size=8)
    prep = prepare_data(c, batch_size=4)
    assert prep.manifest["source"] == "digits_paired" and prep.manifest["kind"] == "paired"
    assert load_prepared(prepared_path(c)).tensors["b"].sum() == 6 * 64
    with pytest.raises(DataError, match=r"only 6 images in digits_paired \(tensor a\)"):
        prepare_data(c, batch_size=8)
    with pytest.raises(DataError, match=r"unpaired_folder needs data\.root"):
        prepare_data(cfg(tmp_path, source="unpaired_folder"))

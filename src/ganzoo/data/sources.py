"""Image sources -> `RawImages`: uint8 NCHW tensors at the source's native size, or for image
folders `FileRows` that decode the files a chunk at a time at the target size (so `prepare` never
holds the whole folder; `load_images` decodes them all when asked for tensors).

Every source works offline when its files are on disk; downloads are only a fallback. Errors
are `DataError`s whose one-line message names the culprit (key, file or folder) and the fix.
Translation sources (paired/unpaired) are not single image sets: `ganzoo.data.prepare` builds them.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganzoo.data.images import IMAGE_EXTS, channels_of, check_resize, list_images
from ganzoo.data.rows import FileRows, SizeReport
from ganzoo.errors import DataError

DEFAULT_ROOT = "data/raw"
TRANSLATION_SOURCES = ("paired_folder", "unpaired_folder", "digits_paired", "digits_unpaired",
                       "photos_paired", "photos_unpaired")

# torchvision's folder names and class names, so a torchvision download root works as is.
IDX_DATASETS = {
    "mnist": ("MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": ("FashionMNIST", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
}
IDX_SPLITS = ("train", "t10k")


@dataclass
class RawImages:
    images: torch.Tensor | FileRows  # uint8 (N, C, H, W); FileRows already at the target size
    labels: torch.Tensor | None = None  # int64 (N,)
    classes: list[str] | None = None
    origin: str = ""  # which files were read, for the manifest
    test_images: torch.Tensor | None = None  # a held-out split, when the source has one (photos)
    test_labels: torch.Tensor | None = None


def load_images(data_cfg, lazy: bool = False) -> RawImages:
    """The source's images; `lazy` leaves a folder's files undecoded (FileRows) for `prepare`."""
    source = data_cfg.source
    if source == "auto":  # the variant decides (ganzoo.variants.registry.resolve); data can't
        raise DataError("data.source='auto' was not resolved to a dataset; run through `ganzoo prepare` "
                        "or set data.source explicitly (e.g. digits)")
    if source in TRANSLATION_SOURCES:
        raise DataError(f"data.source={source!r} is an image-translation source, not one image set; "
                        "build it with ganzoo.data.prepare.prepare_data")
    loader = LOADERS.get(source)
    if loader is None:
        raise DataError(f"data.source={source!r} is unknown; valid: {', '.join(sorted(LOADERS))}")
    raw = loader(data_cfg)
    if isinstance(raw.images, FileRows) and not lazy:
        raw.images = torch.from_numpy(raw.images.read(0, raw.images.shape[0]))
    return raw


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# --------------------------------------------------------------------------- digits

def load_digits(data_cfg) -> RawImages:
    from sklearn.datasets import load_digits as sk_digits  # bundled with sklearn: no network

    d = sk_digits()
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0..16 -> 0..255
    return RawImages(images=torch.from_numpy(x).unsqueeze(1),
                     labels=torch.from_numpy(d.target.astype(np.int64)),
                     classes=[str(i) for i in range(10)],
                     origin="sklearn.datasets.load_digits")


# --------------------------------------------------------------------------- MNIST-style IDX

def _raw_dirs(root: Path, folder: str) -> list[Path]:
    """Accept the torchvision root, the <folder>/ directory or its raw/ directory itself."""
    return [root / folder / "raw", root / "raw", root]


def _find(d: Path, name: str) -> Path | None:
    for p in (d / name, d / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def _find_splits(dirs: list[Path]) -> list[tuple[Path, Path]]:
    """(images, labels) file pairs of the splits present in the first folder holding any."""
    for d in dirs:
        found = []
        for split in IDX_SPLITS:
            img, lab = _find(d, f"{split}-images-idx3-ubyte"), _find(d, f"{split}-labels-idx1-ubyte")
            if img and not lab:
                raise DataError(f"{img} has no labels file {split}-labels-idx1-ubyte[.gz] beside it; "
                                "restore it or point data.root at a complete copy")
            if lab and not img:
                raise DataError(f"{lab} has no images file {split}-images-idx3-ubyte[.gz] beside it; "
                                "restore it or point data.root at a complete copy")
            if img and lab:
                found.append((img, lab))
        if found:
            return found
    return []


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) of unsigned bytes."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path} ({_first_line(exc)}); re-download it or fix data.root") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (bad header); re-download it")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({body.size} bytes for shape {shape}); re-download it")
    return body.reshape(shape)


def _download_idx(source: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = tvd.MNIST if source == "mnist" else tvd.FashionMNIST
    cls(str(root), train=True, download=True)  # fetches all four files into <root>/<folder>/raw


def load_idx(data_cfg) -> RawImages:
    source = data_cfg.source
    folder, classes = IDX_DATASETS[source]
    root = Path(data_cfg.root or DEFAULT_ROOT)
    dirs = _raw_dirs(root, folder)
    pairs = _find_splits(dirs)
    download_error = ""
    if not pairs and data_cfg.download:
        try:
            _download_idx(source, root)
        except Exception as exc:  # noqa: BLE001 -- offline, proxy, disk...: any failure means "files not here"
            download_error = f"; download failed ({_first_line(exc)})"
        pairs = _find_splits(dirs)
    if not pairs:
        names = ", ".join(f"{s}-{k}-idx{n}-ubyte[.gz]" for s in IDX_SPLITS
                          for k, n in (("images", 3), ("labels", 1)))
        where = ", ".join(str(d) for d in dirs)
        raise DataError(f"data.source={source}: none of {names} found in {where}{download_error}; "
                        f"set data.root to the folder holding {folder}/raw/")
    xs, ys = [], []
    for img, lab in pairs:
        x, y = read_idx(img), read_idx(lab)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{img} ({x.shape}) and {lab} ({y.shape}) do not match; re-download them")
        xs.append(x)
        ys.append(y)
    images = torch.from_numpy(np.concatenate(xs)).unsqueeze(1)
    labels = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    return RawImages(images=images, labels=labels, classes=list(classes),
                     origin=", ".join(str(p) for pair in pairs for p in pair))


# --------------------------------------------------------------------------- CIFAR-10

def load_cifar10(data_cfg) -> RawImages:
    import torchvision.datasets as tvd

    root = Path(data_cfg.root or DEFAULT_ROOT)
    if root.name == "cifar-10-batches-py":  # accept the extracted folder itself
        root = root.parent
    try:
        ds = tvd.CIFAR10(str(root), train=True, download=data_cfg.download)
    except Exception as exc:  # noqa: BLE001 -- missing, partial or offline: all mean "not loadable here"
        raise DataError(f"data.source=cifar10: cannot load CIFAR-10 from {root}/ ({_first_line(exc)}); set data.root "
                        "to the folder holding cifar-10-batches-py/, or data.download: true with internet") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    return RawImages(images=images, labels=torch.tensor(ds.targets, dtype=torch.int64),
                     classes=list(ds.classes), origin=str(root / ds.base_folder))


# --------------------------------------------------------------------------- image folder

def list_folder(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Image files and, when root holds class sub-folders, their labels and class names."""
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not an existing folder; set data.root to a folder of images")
    flat = list_images(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    groups = [(d.name, list_images(d)) for d in subdirs]
    groups = [(name, files) for name, files in groups if files]  # empty sub-folders are no class
    if groups and flat:
        raise DataError(f"{flat[0]} sits beside class folders in {root}; move it into a class folder "
                        "or remove the sub-folders")
    if groups:
        files = [f for _, fs in groups for f in fs]
        labels = [i for i, (_, fs) in enumerate(groups) for _ in fs]
        return files, labels, [name for name, _ in groups]
    if not flat:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in {root} or its sub-folders; "
                        "add images or fix data.root")
    return flat, None, None


def load_folder(data_cfg) -> RawImages:
    if data_cfg.root is None:
        raise DataError("data.source=folder needs data.root: set it to a folder of images")
    root = Path(data_cfg.root)
    files, labels, classes = list_folder(root)
    if data_cfg.limit:  # decode only what will be kept
        files, labels = files[:data_cfg.limit], labels[:data_cfg.limit] if labels else None
    channels = channels_of(files, data_cfg.channels)
    # Sizes may differ between files, so each is resized as it is decoded, by the resize policy.
    rows = FileRows(files, channels, data_cfg.image_size, check_resize(data_cfg.resize),
                    SizeReport(data_cfg.image_size))
    what = f"{len(files)} files" + (f", {len(classes)} classes" if classes else "")
    return RawImages(images=rows,
                     labels=torch.tensor(labels, dtype=torch.int64) if labels is not None else None,
                     classes=classes, origin=f"{root} ({what})")


def load_photos(data_cfg) -> RawImages:
    """The embedded colour task: crops of scikit-learn's two sample photos (ganzoo.data.photos)."""
    from ganzoo.data import photos

    t = photos.photo_crops(data_cfg)
    return RawImages(images=t["x"], labels=t["y"], classes=list(photos.PHOTOS), origin=photos.CROPS_ORIGIN,
                     test_images=t["x_test"], test_labels=t["y_test"])


LOADERS = {
    "digits": load_digits,
    "photos": load_photos,
    "mnist": load_idx,
    "fashion_mnist": load_idx,
    "cifar10": load_cifar10,
    "folder": load_folder,
}

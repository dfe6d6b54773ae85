"""Image-translation sources -> `Prepared` (kind paired or unpaired), keyed by `data.source`.

`ganzoo.data.prepare` looks the builder up in `TRANSLATION_BUILDERS`; each takes the `DataConfig`
and returns uint8 NCHW tensors at `data.image_size`.

Folder layouts (`data.root`):

- `paired_folder`, pix2pix layout: `train/`, `val/`, `test/` of images holding A (left half) and
  B (right half) side by side. `train/` is required; `test/` is the test split, `val/` stands in
  when there is no `test/`.
- `paired_folder`, A/B layout: `A/` and `B/` holding images matched by file stem (`A/x.jpg` pairs
  with `B/x.png`). Either both have `train/` and `test/` (or `val/`) sub-folders, like the folders
  pix2pix's `combine_A_and_B.py` reads, or both are flat, in which case every fifth pair by sorted
  name (20%) is held out as the test split.
- `unpaired_folder`, CycleGAN layout: `trainA/`, `trainB/`, `testA/`, `testB/`, all required.

Both domains get one channel count: `data.channels`, else 3 when any image is colour, else 1.
Every image is fitted to `data.image_size` by the resize policy `data.resize` (ganzoo.data.images);
folders are decoded a chunk at a time while `prepare` writes them (ganzoo.data.rows).
`data.direction=BtoA` swaps A and B of paired data (the input becomes B). `data.limit` keeps the
first N training images (pairs / images of each domain).

Embedded defaults, built from scikit-learn's bundled digits (no network), 20% held out for test:

- `digits_paired`: A = the digit's outline (thresholded morphological gradient), B = the digit.
- `digits_unpaired`: A = the digit, B = the digit thickened (dilated) and inverted, dark on white.
  A and B come from disjoint halves of the images, so no digit appears in both domains: there
  are no pairs to learn from, yet the true mapping (dilate + invert) is known and the class
  labels (`y_a`, `y_b`, ...) let evaluation check that translation keeps the digit.

The embedded colour tasks `photos_paired` and `photos_unpaired` are built in ganzoo.data.photos.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ganzoo.data import photos
from ganzoo.data.images import IMAGE_EXTS, channels_of, check_resize, convert, list_images
from ganzoo.data.prepared import Prepared
from ganzoo.data.rows import FileRows, PairRows, SizeReport, matched_pair, side_by_side
from ganzoo.data.sources import load_digits
from ganzoo.errors import DataError

TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the split depends on the data alone, so prepared hashes are stable


# --------------------------------------------------------------------------- file helpers

def _require_dir(d: Path, what: str) -> Path:
    if not d.is_dir():
        raise DataError(f"missing split folder {d}/ ({what}); create it or fix data.root")
    files = list_images(d)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in {d}/; add images or fix data.root")
    return d


def _limit(files: list, data_cfg) -> list:
    return files[:data_cfg.limit] if data_cfg.limit else files


# --------------------------------------------------------------------------- paired folders

def _match(dir_a: Path, dir_b: Path) -> list[tuple[Path, Path]]:
    fa, fb = {p.stem: p for p in list_images(dir_a)}, {p.stem: p for p in list_images(dir_b)}
    only_a, only_b = sorted(fa.keys() - fb.keys()), sorted(fb.keys() - fa.keys())
    if only_a or only_b:
        lone = fa[only_a[0]] if only_a else fb[only_b[0]]
        other = dir_b if only_a else dir_a
        raise DataError(f"{lone} has no partner of the same name in {other}/ ({len(fa)} images in A, "
                        f"{len(fb)} in B); paired data needs one B per A, matched by file name")
    if not fa:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in {dir_a}/ or {dir_b}/; add images or fix data.root")
    return [(fa[k], fb[k]) for k in sorted(fa)]


def _pairs(items: list, decode, data_cfg, channels: int, report: SizeReport) -> tuple[object, object]:
    rows = PairRows(items, decode(channels, data_cfg.image_size, check_resize(data_cfg.resize), report),
                    channels, data_cfg.image_size, report)
    return rows.a, rows.b


def _test_dir(parent: Path, what: str) -> Path:
    for name in ("test", "val"):
        if (parent / name).is_dir():
            return _require_dir(parent / name, what)
    raise DataError(f"missing split folder {parent}/test/ (or val/) ({what}); create it or fix data.root")


def _paired_pix2pix(root: Path, data_cfg) -> tuple[dict, str]:
    train = list_images(_require_dir(root / "train", "pix2pix layout: A|B side-by-side training images"))
    test = list_images(_test_dir(root, "pix2pix layout: A|B side-by-side test images"))
    train = _limit(train, data_cfg)
    ch = channels_of(train + test, data_cfg.channels)
    report = SizeReport(data_cfg.image_size)
    a, b = _pairs(train, side_by_side, data_cfg, ch, report)
    a_t, b_t = _pairs(test, side_by_side, data_cfg, ch, report)
    return {"a": a, "b": b, "a_test": a_t, "b_test": b_t}, f"{root} (pix2pix layout, {len(train)}+{len(test)} pairs)"


def _paired_ab(root: Path, data_cfg) -> tuple[dict, str]:
    da, db = root / "A", root / "B"
    if (da / "train").is_dir() or (db / "train").is_dir():
        train = _match(_require_dir(da / "train", "A training images"), _require_dir(db / "train", "B training images"))
        test = _match(_test_dir(da, "A test images"), _test_dir(db, "B test images"))
        layout = "A/ B/ with train/ test/"
    else:
        pairs = _match(da, db)
        if len(pairs) < 2:
            raise DataError(f"only {len(pairs)} pair in {da}/ and {db}/; a flat A/ B/ layout needs at least 2 "
                            "(every fifth is held out for test)")
        test = pairs[::5]
        train = [p for i, p in enumerate(pairs) if i % 5]
        layout = "flat A/ B/, every fifth pair held out"
    train = _limit(train, data_cfg)
    ch = channels_of([p for pair in train + test for p in pair], data_cfg.channels)
    report = SizeReport(data_cfg.image_size)
    a, b = _pairs(train, matched_pair, data_cfg, ch, report)
    a_t, b_t = _pairs(test, matched_pair, data_cfg, ch, report)
    return {"a": a, "b": b, "a_test": a_t, "b_test": b_t}, f"{root} ({layout}, {len(train)}+{len(test)} pairs)"


def _root(data_cfg) -> Path:
    if data_cfg.root is None:
        raise DataError(f"data.source={data_cfg.source} needs data.root: set it to your dataset folder")
    root = Path(data_cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not an existing folder; set data.root to your dataset folder")
    return root


def swap_direction(tensors: dict, direction: str) -> dict:
    """BtoA: the model's input (a) is the right/B half."""
    if direction == "AtoB":
        return tensors
    swap = {"a": "b", "b": "a", "a_test": "b_test", "b_test": "a_test"}
    return {swap.get(k, k): v for k, v in tensors.items()}


def translation_manifest(data_cfg, tensors: dict, origin: str, classes=None) -> dict:
    return {"source": data_cfg.source, "root": data_cfg.root, "image_size": data_cfg.image_size,
            "channels": int(tensors["a"].shape[1]), "classes": classes, "origin": origin,
            "direction": data_cfg.direction, "limit": data_cfg.limit, "resize": data_cfg.resize}


def build_paired_folder(data_cfg) -> Prepared:
    root = _root(data_cfg)
    if (root / "A").is_dir() or (root / "B").is_dir():
        if not ((root / "A").is_dir() and (root / "B").is_dir()):
            missing = root / ("B" if (root / "A").is_dir() else "A")
            raise DataError(f"missing split folder {missing}/: the A/ B/ layout needs both; create it or fix data.root")
        tensors, origin = _paired_ab(root, data_cfg)
    elif (root / "train").is_dir():
        tensors, origin = _paired_pix2pix(root, data_cfg)
    else:
        raise DataError(f"missing split folder {root}/train/ (pix2pix layout) or {root}/A/ and {root}/B/ "
                        "(matched by file name); arrange the data in one of these layouts")
    tensors = swap_direction(tensors, data_cfg.direction)
    return Prepared("paired", tensors, translation_manifest(data_cfg, tensors, origin))


def build_unpaired_folder(data_cfg) -> Prepared:
    root = _root(data_cfg)
    dirs = {k: _require_dir(root / name, f"CycleGAN layout: {what}") for k, name, what in (
        ("a", "trainA", "domain A training images"), ("b", "trainB", "domain B training images"),
        ("a_test", "testA", "domain A test images"), ("b_test", "testB", "domain B test images"))}
    files = {k: list_images(d) for k, d in dirs.items()}
    files["a"], files["b"] = _limit(files["a"], data_cfg), _limit(files["b"], data_cfg)
    ch = channels_of([p for fs in files.values() for p in fs], data_cfg.channels)
    report = SizeReport(data_cfg.image_size)
    tensors = {k: FileRows(fs, ch, data_cfg.image_size, check_resize(data_cfg.resize), report)
               for k, fs in files.items()}
    counts = ", ".join(f"{dirs[k].name} {len(fs)}" for k, fs in files.items())
    return Prepared("unpaired", tensors, translation_manifest(data_cfg, tensors, f"{root} (CycleGAN layout: {counts})"))


# --------------------------------------------------------------------------- embedded digits

def _digits(data_cfg) -> tuple[torch.Tensor, torch.Tensor]:
    raw = load_digits(data_cfg)
    x, y = raw.images, raw.labels
    assert isinstance(x, torch.Tensor) and y is not None, "the embedded digits are a labelled tensor"
    if data_cfg.limit:
        x, y = x[:data_cfg.limit], y[:data_cfg.limit]
    return convert(x, data_cfg.image_size, 1), y


def _kernel(size: int) -> int:
    """Odd structuring element growing with the image (3 at 32 px) so strokes scale alike."""
    return max(3, (size // 16) | 1)


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, stride=1, padding=k // 2)


def outline(x: torch.Tensor) -> torch.Tensor:
    """uint8 digits -> uint8 outlines: morphological gradient (dilate - erode), thresholded."""
    f, k = x.float(), _kernel(x.shape[-1])
    grad = _dilate(f, k) + _dilate(-f, k)  # max - min over the window
    return ((grad > 64) * 255).to(torch.uint8)


def thick_inverted(x: torch.Tensor) -> torch.Tensor:
    """uint8 digits -> thicker strokes, dark on white."""
    return (255 - _dilate(x.float(), _kernel(x.shape[-1]))).to(torch.uint8)


def _split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = max(1, int(round(n * TEST_FRACTION)))
    return perm[n_test:], perm[:n_test]


def _channels_out(x: torch.Tensor, data_cfg) -> torch.Tensor:
    return x.repeat(1, 3, 1, 1) if data_cfg.channels == 3 else x


def build_digits_paired(data_cfg) -> Prepared:
    x, y = _digits(data_cfg)
    a, b = _channels_out(outline(x), data_cfg), _channels_out(x, data_cfg)
    train, test = _split(len(x))
    tensors = {"a": a[train], "b": b[train], "a_test": a[test], "b_test": b[test],
               "y": y[train], "y_test": y[test]}
    tensors = {k: v.contiguous() for k, v in swap_direction(tensors, data_cfg.direction).items()}
    origin = "sklearn.datasets.load_digits: A = outline (morphological gradient), B = digit"
    return Prepared("paired", tensors, translation_manifest(data_cfg, tensors, origin, [str(i) for i in range(10)]))


def build_digits_unpaired(data_cfg) -> Prepared:
    x, y = _digits(data_cfg)
    a, b = _channels_out(x, data_cfg), _channels_out(thick_inverted(x), data_cfg)
    train, test = _split(len(x))
    # Disjoint halves: A's digits and B's digits are different images, so nothing is paired.
    parts = {"a": train[0::2], "b": train[1::2], "a_test": test[0::2], "b_test": test[1::2]}
    tensors = {k: (a if k.startswith("a") else b)[idx].contiguous() for k, idx in parts.items()}
    tensors.update({f"y_{k}": y[idx].contiguous() for k, idx in parts.items()})
    origin = "sklearn.datasets.load_digits: A = digit, B = thickened and inverted digit, disjoint halves"
    return Prepared("unpaired", tensors, translation_manifest(data_cfg, tensors, origin, [str(i) for i in range(10)]))


# --------------------------------------------------------------------------- embedded photos

def build_photos_paired(data_cfg) -> Prepared:
    tensors, origin = photos.paired_tensors(data_cfg)
    tensors = swap_direction(tensors, data_cfg.direction)
    return Prepared("paired", tensors, translation_manifest(data_cfg, tensors, origin))


def build_photos_unpaired(data_cfg) -> Prepared:
    tensors, origin = photos.unpaired_tensors(data_cfg)
    return Prepared("unpaired", tensors, translation_manifest(data_cfg, tensors, origin))


TRANSLATION_BUILDERS: dict[str, Callable[..., Prepared]] = {
    "paired_folder": build_paired_folder,
    "unpaired_folder": build_unpaired_folder,
    "digits_paired": build_digits_paired,
    "digits_unpaired": build_digits_unpaired,
    "photos_paired": build_photos_paired,
    "photos_unpaired": build_photos_unpaired,
}

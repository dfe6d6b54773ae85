"""The embedded colour tasks, cut from the two photographs scikit-learn ships
(`sklearn.datasets.load_sample_images`: `china.jpg`, a temple among trees, and `flower.jpg`,
a close-up of a flower; both 427x640 RGB), so they run offline and in CI like the digit tasks.

Crops: square windows (side uniform in 128-160 px, position uniform; fixed seeds, so the windows
do not depend on `data.image_size` and a prepared hash is stable), resized bicubically to
`data.image_size`. 512 training and 64 held-out crops per photo; `data.limit` keeps the first N
training crops. Each photo is cut into four vertical strips of 160 columns: the held-out crops
lie in strips 1 and 3 (columns 0-159 and 320-479), the training crops in strips 2 and 4 (160-319
and 480-639), so no held-out pixel is in any training crop. Both subjects stand in the middle of
their photo, and the cut at column 320 runs through them, so each split holds about half of the
temple (or of the flower) with its sky, water and trees (or leaves): share of petal pixels (red
- blue > 60) in the flower's crops 0.34 training, 0.27 held out (0.40 with the earlier 128-200
px windows anywhere); a band across the middle instead would leave 0.19 in training. Test
metrics therefore score unseen pixels of the same two scenes, not new scenes.

- `photos` (images, labelled): both photos' crops interleaved; `y` names the photo
  (classes `china`, `flower`); `x_test`, `y_test` the held-out crops. For DCGAN & co. at 64x64.
- `photos_paired` (paired): A = the crop's edge map (Sobel magnitude of the blurred luma, dark
  lines on white, 1 channel), B = the crop (3 channels); `data.channels` sets both; pix2pix's
  edges -> photo task.
- `photos_unpaired` (unpaired): A = crops of china.jpg, B = crops of flower.jpg: two domains that
  look nothing alike (greens, roof tiles and sky vs pinks and yellows), for CycleGAN/DiscoGAN.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ganzoo.data.images import LUMA, to_mode
from ganzoo.errors import DataError

PHOTOS = ("china", "flower")
CROP_SIDES = (128, 160)  # crop side range in photo pixels (at most a strip's width)
STRIPS = 4  # vertical strips per photo: even ones (from 0) held out, odd ones for training
N_TRAIN, N_TEST = 512, 64  # crops per photo
SEED = 0
EDGE_GAIN = 3.0  # Sobel magnitude (grey levels per pixel) -> darkness of the edge line
ORIGIN = "sklearn.datasets.load_sample_images (china.jpg, flower.jpg)"


@functools.lru_cache(maxsize=1)
def sample_photos() -> tuple[np.ndarray, ...]:
    """The two photos as HWC uint8 arrays (bundled with scikit-learn: no network), decoded once."""
    from sklearn.datasets import load_sample_images

    try:
        images = load_sample_images().images
    except Exception as exc:  # noqa: BLE001 -- a broken scikit-learn install: name it, don't crash
        raise DataError(f"cannot load scikit-learn's sample photos ({type(exc).__name__}: {exc}); "
                        "reinstall scikit-learn with `pip install --force-reinstall scikit-learn`") from None
    return tuple(np.asarray(im, dtype=np.uint8) for im in images)


Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive


def split_regions(height: int, width: int, split: str) -> list[Box]:
    """The areas a split's crops lie in: the even vertical strips for "test", the odd ones for
    "train" (disjoint: no pixel in both)."""
    w = width // STRIPS
    first = 0 if split == "test" else 1
    return [(k * w, 0, (k + 1) * w, height) for k in range(first, STRIPS, 2)]


def crop_boxes(regions: list[Box], n: int, seed: int) -> list[Box]:
    """n square windows, each inside one of `regions` (drawn in proportion to their areas)."""
    g = torch.Generator().manual_seed(seed)
    areas = torch.tensor([float((r - x0) * (b - y0)) for x0, y0, r, b in regions])
    boxes = []
    for _ in range(n):
        x0, y0, x1, y1 = regions[int(torch.multinomial(areas, 1, generator=g))]
        w, h = x1 - x0, y1 - y0
        hi = min(CROP_SIDES[1], w, h)
        lo = min(CROP_SIDES[0], hi)
        side = int(torch.randint(lo, hi + 1, (1,), generator=g))
        left = x0 + int(torch.randint(0, w - side + 1, (1,), generator=g))
        top = y0 + int(torch.randint(0, h - side + 1, (1,), generator=g))
        boxes.append((left, top, left + side, top + side))
    return boxes


def photo_boxes(photo: np.ndarray, index: int, split: str, n: int) -> list[Box]:
    """The windows of photo `index` (0: china, 1: flower) for one split, in photo pixels."""
    seed = SEED * 100 + 2 * index + (split == "test")
    return crop_boxes(split_regions(photo.shape[0], photo.shape[1], split), n, seed)


def crops(photo: np.ndarray, index: int, split: str, n: int, size: int, channels: int) -> torch.Tensor:
    """n crops of one photo, resized to size x size: uint8 (n, channels, size, size)."""
    from PIL import Image

    im = to_mode(Image.fromarray(photo), channels)
    out = []
    for box in photo_boxes(photo, index, split, n):
        a = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, box=box), dtype=np.uint8)
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def _split(data_cfg, split: str, channels: int) -> list[torch.Tensor]:
    n = N_TRAIN if split == "train" else N_TEST
    if split == "train" and data_cfg.limit:
        n = min(n, data_cfg.limit)
    return [crops(p, i, split, n, data_cfg.image_size, channels) for i, p in enumerate(sample_photos())]


def _interleave(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[china crops, flower crops] -> (c0, f0, c1, f1, ...), labels 0/1: a `limit` keeps both photos."""
    x = torch.stack(parts, 1).flatten(0, 1).contiguous()
    y = torch.arange(len(parts)).repeat(parts[0].shape[0])
    return x, y


# --------------------------------------------------------------------------- photos (images)

def photo_crops(data_cfg) -> dict[str, torch.Tensor]:
    """x, y (training crops, photo index), x_test, y_test (held out); sources.load_photos wraps them."""
    channels = data_cfg.channels or 3
    x, y = _interleave(_split(data_cfg, "train", channels))
    if data_cfg.limit:
        x, y = x[:data_cfg.limit], y[:data_cfg.limit]
    xt, yt = _interleave(_split(data_cfg, "test", channels))
    return {"x": x, "y": y, "x_test": xt, "y_test": yt}


SPLIT_NOTE = f"held-out crops from vertical strips 1 and 3 of {STRIPS}, training crops from strips 2 and 4"
CROPS_ORIGIN = f"{ORIGIN}: square crops of {CROP_SIDES[0]}-{CROP_SIDES[1]} px; {SPLIT_NOTE}"


# --------------------------------------------------------------------------- photos_paired

def edge_map(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) -> uint8 (N, 1, H, W): dark lines where the (binomially blurred) luma
    changes, white elsewhere; a line sketch of the crop, like pix2pix's edges2* inputs."""
    f = x.float()
    if f.shape[1] == 3:
        f = (f * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    k = torch.tensor([1.0, 2.0, 1.0])
    blur = (k[:, None] * k[None, :] / 16).view(1, 1, 3, 3)
    f = F.conv2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), blur)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.t()]).unsqueeze(1)
    g = F.conv2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), kernels) / 4  # grey levels per pixel
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    return (255 - (mag * EDGE_GAIN).clamp(0, 255)).round().to(torch.uint8)


def paired_tensors(data_cfg) -> tuple[dict[str, torch.Tensor], str]:
    """a (edge maps), b (crops), a_test, b_test, and the origin line; translation.py builds the dataset."""
    cb = data_cfg.channels or 3
    b, _ = _interleave(_split(data_cfg, "train", cb))
    b = b[:data_cfg.limit] if data_cfg.limit else b
    bt, _ = _interleave(_split(data_cfg, "test", cb))
    a, at = edge_map(b), edge_map(bt)
    if data_cfg.channels == 3:
        a, at = a.repeat(1, 3, 1, 1), at.repeat(1, 3, 1, 1)
    origin = f"{ORIGIN}: A = edge map (Sobel), B = photo crop ({CROP_SIDES[0]}-{CROP_SIDES[1]} px; {SPLIT_NOTE})"
    return {"a": a, "b": b, "a_test": at, "b_test": bt}, origin


# --------------------------------------------------------------------------- photos_unpaired

def unpaired_tensors(data_cfg) -> tuple[dict[str, torch.Tensor], str]:
    """a (china.jpg crops), b (flower.jpg crops), a_test, b_test, and the origin line."""
    ch = data_cfg.channels or 3
    china, flower = _split(data_cfg, "train", ch)
    china_t, flower_t = _split(data_cfg, "test", ch)
    origin = f"{ORIGIN}: A = china.jpg crops, B = flower.jpg crops ({CROP_SIDES[0]}-{CROP_SIDES[1]} px; {SPLIT_NOTE})"
    return {"a": china, "b": flower, "a_test": china_t, "b_test": flower_t}, origin

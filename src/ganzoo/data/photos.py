"""The embedded colour tasks, cut from the two photographs scikit-learn ships
(`sklearn.datasets.load_sample_images`: `china.jpg`, a temple among trees, and `flower.jpg`,
a close-up of a flower; both 427x640 RGB), so they run offline and in CI like the digit tasks.

Crops: square windows of 128-200 px anywhere in a photo (uniform side, uniform position; fixed
seeds, so the windows do not depend on `data.image_size` and a prepared hash is stable), each
resized bicubically to `data.image_size`. 512 training and 64 held-out crops per photo;
`data.limit` keeps the first N training crops. The held-out crops are other windows, drawn the
same way: the same content distribution as training (a disjoint strip of the photo would show
mostly trees and blurred background, unlike the training crops), but their pixels overlap the
training crops', so on these tasks test metrics measure fit, not generalisation to new scenes.

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
CROP_SIDES = (128, 200)  # crop side range in photo pixels
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


def crop_boxes(height: int, width: int, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """n (left, top, right, bottom) square windows inside the photo."""
    g = torch.Generator().manual_seed(seed)
    hi = min(CROP_SIDES[1], width, height)
    lo = min(CROP_SIDES[0], hi)
    boxes = []
    for _ in range(n):
        side = int(torch.randint(lo, hi + 1, (1,), generator=g))
        left = int(torch.randint(0, width - side + 1, (1,), generator=g))
        top = int(torch.randint(0, height - side + 1, (1,), generator=g))
        boxes.append((left, top, left + side, top + side))
    return boxes


def crops(photo: np.ndarray, index: int, split: str, n: int, size: int, channels: int) -> torch.Tensor:
    """n crops of one photo, resized to size x size: uint8 (n, channels, size, size)."""
    from PIL import Image

    im = to_mode(Image.fromarray(photo), channels)
    seed = SEED * 100 + 2 * index + (split == "test")
    out = []
    for box in crop_boxes(photo.shape[0], photo.shape[1], n, seed):
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


CROPS_ORIGIN = f"{ORIGIN}: {CROP_SIDES[0]}-{CROP_SIDES[1]} px crops, held-out crops are other windows"


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
    origin = f"{ORIGIN}: A = edge map (Sobel), B = {CROP_SIDES[0]}-{CROP_SIDES[1]} px photo crop"
    return {"a": a, "b": b, "a_test": at, "b_test": bt}, origin


# --------------------------------------------------------------------------- photos_unpaired

def unpaired_tensors(data_cfg) -> tuple[dict[str, torch.Tensor], str]:
    """a (china.jpg crops), b (flower.jpg crops), a_test, b_test, and the origin line."""
    ch = data_cfg.channels or 3
    china, flower = _split(data_cfg, "train", ch)
    china_t, flower_t = _split(data_cfg, "test", ch)
    origin = f"{ORIGIN}: A = china.jpg crops, B = flower.jpg crops ({CROP_SIDES[0]}-{CROP_SIDES[1]} px)"
    return {"a": china, "b": flower, "a_test": china_t, "b_test": flower_t}, origin

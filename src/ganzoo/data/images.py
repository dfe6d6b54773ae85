"""Image I/O and pixel conversions, written once for every stage: reading files (prepare, translate,
the served model), listing folders, uint8 <-> [-1, 1], resizing prepared tensors, PNG encoding.

Pixel convention: stored images are uint8 in [0, 255]; networks see float in [-1, 1].
Reading an image file: decode (a corrupt file is a `DataError` naming it), convert to the wanted
channel count (16-bit and float grey rescaled first), then fit it to a square by the resize policy
(`data.resize`): `center_crop` (the shorter side is scaled to the size, the rest centre-cropped:
no distortion) or `stretch` (both sides scaled to the size, the aspect ratio lost: the resize step
of pix2pix's `resize_and_crop`), bicubically. JPEGs larger than twice the target are decoded at a
reduced DCT scale first (PIL's `draft`, as its thumbnails do), which makes big photos several
times cheaper to read and leaves at least the target size for the bicubic resize.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganzoo.errors import DataError
from ganzoo.files import atomic_write_bytes

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # palette ("P") counts as colour
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for RGB -> grayscale
CHUNK = 1024  # images resized at once: bounds the float copy's memory
RESIZE_POLICIES = ("center_crop", "stretch")


# --------------------------------------------------------------------------- pixel ranges

def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def as_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images scaled to [-1, 1]; float images (already in [-1, 1]) as float."""
    return to_unit_range(x) if x.dtype == torch.uint8 else x.float()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return x.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- files and folders

def is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS


def list_images(d: Path) -> list[Path]:
    """The image files directly in folder `d`, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(d).iterdir() if is_image(p))


def open_image(path, load: bool, name: str | None = None, draft=None):
    """PIL image of `path` (or a binary file object, called `name` in errors); `load` decodes now,
    so a truncated file fails here, naming it. `draft(w, h)`, when given, returns the smallest
    (w, h) the caller needs, which lets a JPEG decode at a reduced scale."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        if draft is not None and im.format == "JPEG":
            im.draft(im.mode, draft(*im.size))
        if load:
            im.load()
        return im
    except Image.DecompressionBombError:
        raise DataError(f"image {name or path} is too large to decode safely (over PIL's "
                        f"{Image.MAX_IMAGE_PIXELS:,} pixel guard); shrink or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {name or path} ({type(exc).__name__}); "
                        "remove or replace the file") from None


def channels_of(files: list[Path], channels: int | None = None) -> int:
    """`channels` when given, else 3 if any image is colour (grey -> RGB loses nothing), else 1."""
    if channels:
        return channels
    for p in files:
        with open_image(p, load=False) as im:  # the header alone tells the mode
            if im.mode not in GRAY_MODES:
                return 3
    return 1


def to_mode(im, channels: int):
    """PIL image -> 'L' (1 channel) or 'RGB' (3); alpha is dropped."""
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float grayscale: PIL's convert clips at 255, so rescale to 8 bits first.
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.rint(a * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    return im.convert("L" if channels == 1 else "RGB")


def check_resize(resize: str) -> str:
    if resize not in RESIZE_POLICIES:
        raise DataError(f"data.resize={resize!r} is unknown; use {' or '.join(RESIZE_POLICIES)}")
    return resize


def square_resize(im, size: int, resize: str = "center_crop", source: tuple[int, int] | None = None):
    """Fit a PIL image to size x size by the resize policy (see the module docstring), bicubic.
    `source`: the file's own (w, h) when `im` was decoded at a reduced scale; the crop is then
    placed where it falls in the full image (a fractional box), so both decodes frame alike."""
    from PIL import Image

    w, h = im.size
    if check_resize(resize) == "stretch":
        return im if (w, h) == (size, size) else im.resize((size, size), Image.Resampling.BICUBIC)
    if source is not None and source != (w, h):
        sw, sh = source
        s = min(sw, sh)
        left, top = (sw - s) // 2, (sh - s) // 2
        fx, fy = w / sw, h / sh
        return im.resize((size, size), Image.Resampling.BICUBIC,
                         box=(left * fx, top * fy, (left + s) * fx, (top + s) * fy))
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    return im if s == size else im.resize((size, size), Image.Resampling.BICUBIC)


def draft_size(w: int, h: int, size: int, resize: str = "center_crop") -> tuple[int, int]:
    """The smallest decoded (w, h) that still covers `size` after the resize policy."""
    if resize == "stretch":
        return size, size
    s = max(1, min(w, h))
    return -(-size * w // s), -(-size * h // s)  # ceil: the shorter side stays >= size


def image_array(im, size: int, resize: str = "center_crop", source: tuple[int, int] | None = None) -> np.ndarray:
    """PIL image (already in its mode) -> uint8 CHW array, fitted to size x size."""
    a = np.array(square_resize(im, size, resize, source), dtype=np.uint8)  # a writable copy: torch.from_numpy shares it
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_image(path, channels: int, name: str | None = None):
    """Decode `path` and convert it to `channels` (PIL image; DataError naming a bad file)."""
    with open_image(path, load=True, name=name) as im:
        return to_mode(im, channels)


def decode_file(path, channels: int, size: int, resize: str = "center_crop",
                name: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """One image -> (uint8 CHW array fitted to size x size, the file's own (w, h))."""
    own: list[tuple[int, int]] = []

    def draft(w: int, h: int) -> tuple[int, int]:
        own.append((w, h))
        return draft_size(w, h, size, resize)

    with open_image(path, load=True, name=name, draft=draft) as im:
        source = own[0] if own else im.size
        return image_array(to_mode(im, channels), size, resize, source), source


def read_image(path: Path, channels: int, size: int, resize: str = "center_crop") -> np.ndarray:
    """One image file -> uint8 CHW array (channels, size, size)."""
    return decode_file(path, channels, size, resize)[0]


def decode_image(data: bytes, channels: int, size: int, name: str = "image") -> np.ndarray:
    """Encoded image bytes (PNG, JPEG...) -> uint8 CHW array, the same conversion as a file."""
    return decode_file(io.BytesIO(data), channels, size, name=name)[0]


# --------------------------------------------------------------------------- prepared tensors

def convert(x: torch.Tensor, size: int, channels: int | None) -> torch.Tensor:
    """uint8 NCHW -> uint8 N,channels,size,size (bilinear, antialiased when shrinking)."""
    if x.shape[1] not in (1, 3):
        raise DataError(f"images have {x.shape[1]} channels; only 1 or 3 are supported")
    if x.shape[-2:] == (size, size) and channels in (None, x.shape[1]):
        return x
    return torch.cat([_convert_chunk(x[i:i + CHUNK], size, channels) for i in range(0, len(x), CHUNK)])


def _convert_chunk(x: torch.Tensor, size: int, channels: int | None) -> torch.Tensor:
    f = x.float()
    if channels == 1 and f.shape[1] == 3:  # before resizing: a third of the work
        f = (f * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if f.shape[-2:] != (size, size):
        f = F.interpolate(f, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    out = f.round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and out.shape[1] == 1:  # last: no need to resize or round copies
        out = out.repeat(1, 3, 1, 1)
    return out


# --------------------------------------------------------------------------- PNG encoding

def png_bytes(image: torch.Tensor) -> bytes:
    """One CHW image ([-1, 1] float or uint8, 1 or 3 channels) -> PNG bytes (grey stays grey)."""
    from PIL import Image

    x = image if image.dtype == torch.uint8 else to_uint8(image)
    arr = x.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def write_png(image: torch.Tensor, path: str | Path) -> Path:
    """One CHW image -> a PNG file, atomically."""
    path = Path(path)
    data = png_bytes(image)
    atomic_write_bytes(path, lambda f: f.write(data))
    return path


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """NCHW [-1, 1] float or uint8 -> one uint8 CHW grid with white gutters (grey stays grey)."""
    from torchvision.utils import make_grid

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with 1 or 3 channels, got shape {tuple(images.shape)}")
    x = images if images.dtype == torch.uint8 else to_uint8(images)
    g = make_grid(x.cpu(), nrow=max(1, nrow), padding=padding, pad_value=255)
    return g[:1] if images.shape[1] == 1 else g  # make_grid always returns 3 channels


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Write images as one PNG grid with `nrow` images per row, atomically."""
    return write_png(grid(images, nrow, padding), path)

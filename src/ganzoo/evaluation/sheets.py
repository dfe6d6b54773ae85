"""Image sheets: pure tensor arrangement plus one atomic PNG writer.

Variants produce the images (per class, along a latent path, input->output pairs); these helpers
only lay them out, so every variant's sheets look the same. Images are NCHW in [-1, 1] (float)
or uint8.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from ganzoo.data.prepared import atomic_write_bytes, to_uint8


def grid_image(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> Image.Image:
    """NCHW [-1, 1] float or uint8 -> PIL image of a grid with `nrow` images per row."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with 1 or 3 channels, got shape {tuple(images.shape)}")
    x = images if images.dtype == torch.uint8 else to_uint8(images)
    grid = make_grid(x.cpu(), nrow=max(1, nrow), padding=padding, pad_value=255)  # white gutters
    arr = grid.permute(1, 2, 0).contiguous().numpy()
    # make_grid always returns 3 channels; keep grayscale files grayscale.
    return Image.fromarray(arr[:, :, 0] if images.shape[1] == 1 else arr)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Write images as one grid (format from the suffix, PNG by default), atomically."""
    path = Path(path)
    img = grid_image(images, nrow, padding)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
    return path


# --------------------------------------------------------------------------- arrangements

def class_rows(images_by_class: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(classes, per_class, C, H, W) or a list of (per_class, C, H, W) -> (flat images, nrow): one class a row."""
    if isinstance(images_by_class, (list, tuple)):
        per = min(t.shape[0] for t in images_by_class)  # rows must be equally long
        images_by_class = torch.stack([t[:per] for t in images_by_class])
    k, per = images_by_class.shape[:2]
    return images_by_class.reshape(k * per, *images_by_class.shape[2:]), per


def interpolation_latents(z_start: torch.Tensor, z_end: torch.Tensor, steps: int,
                          spherical: bool = True) -> torch.Tensor:
    """(R, D) start and end latents -> (R * steps, D), row-major: row r walks z_start[r] -> z_end[r].

    Spherical interpolation keeps the norm typical of Gaussian latents along the path.
    """
    t = torch.linspace(0, 1, steps, device=z_start.device).view(1, steps, 1)
    a, b = z_start[:, None, :], z_end[:, None, :]
    if not spherical:
        path = a + (b - a) * t
    else:
        cos = torch.nn.functional.cosine_similarity(z_start, z_end, dim=1).clamp(-1 + 1e-7, 1 - 1e-7)
        omega = torch.acos(cos).view(-1, 1, 1)
        path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return path.reshape(-1, z_start.shape[1])


def interpolation_strip(frames: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(steps, C, H, W) one strip, or (rows, steps, C, H, W) several -> (flat images, nrow=steps)."""
    if frames.dim() == 4:
        return frames, frames.shape[0]
    rows, steps = frames.shape[:2]
    return frames.reshape(rows * steps, *frames.shape[2:]), steps


def translation_rows(inputs: torch.Tensor, outputs: torch.Tensor,
                     targets: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Per example one row `input | output | target` (target optional) -> (flat images, nrow).

    Inputs with a different channel count than outputs (e.g. gray -> color) are repeated to match.
    """
    cols = [inputs, outputs] + ([targets] if targets is not None else [])
    n = min(t.shape[0] for t in cols)
    ch = max(t.shape[1] for t in cols)
    cols = [_to_float(t[:n]).expand(-1, ch, -1, -1) for t in cols]
    return torch.stack(cols, dim=1).reshape(n * len(cols), ch, *cols[0].shape[2:]), len(cols)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()


def save_class_sheet(images_by_class, path: str | Path) -> Path:
    flat, nrow = class_rows(images_by_class)
    return save_grid(flat, path, nrow)


def save_interpolation_strip(frames: torch.Tensor, path: str | Path) -> Path:
    flat, nrow = interpolation_strip(frames)
    return save_grid(flat, path, nrow)


def save_translation_rows(inputs: torch.Tensor, outputs: torch.Tensor, path: str | Path,
                          targets: torch.Tensor | None = None) -> Path:
    flat, nrow = translation_rows(inputs, outputs, targets)
    return save_grid(flat, path, nrow)

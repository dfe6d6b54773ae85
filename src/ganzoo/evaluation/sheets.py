"""Sample-sheet arrangements: pure tensor layout (one class a row, latent walks), written through
`ganzoo.data.images.save_grid`, so every variant's sheets look the same. Images are NCHW in
[-1, 1] (float) or uint8.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganzoo.data.images import save_grid

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


def save_class_sheet(images_by_class, path: str | Path) -> Path:
    flat, nrow = class_rows(images_by_class)
    return save_grid(flat, path, nrow)


def save_interpolation_strip(frames: torch.Tensor, path: str | Path) -> Path:
    flat, nrow = interpolation_strip(frames)
    return save_grid(flat, path, nrow)

"""Observers of a training run: the loop calls them, they never change training. The progress bar
lives here; MLflow tracking (`ganzoo.tracking`) implements the same interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganzoo.config import Config
    from ganzoo.training.monitor import Health
    from ganzoo.variants.base import Variant


class Hooks:
    """Observers of a run (progress, tracking). The loop calls them; they never change training."""

    def on_start(self, cfg: Config, variant: Variant, start_step: int) -> None: ...
    def on_log(self, step: int, losses: dict[str, float], images_per_s: float) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_eval(self, health: Health) -> None: ...
    def on_alarm(self, step: int, alarm: str) -> None: ...
    def on_end(self, step: int, path: Path) -> None: ...


class Progress(Hooks):
    """A tqdm bar over the steps, with the latest losses and images/s (train.progress)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
        self.last = start

    def on_log(self, step, losses, images_per_s):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{images_per_s:,.0f}"})
        self.last = step

    def on_eval(self, health):
        if self.bar is not None:
            shown = ", ".join(f"{k.removeprefix('probe_')}={v:.3g}" for k, v in health.metrics.items())
            self.bar.write(f"step {health.step}: {shown}")

    def on_end(self, step, path):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.close()

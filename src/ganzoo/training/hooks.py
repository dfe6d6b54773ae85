"""Observers of a training run: the loop calls them, they never change training. The progress
display lives here; MLflow tracking (`ganzoo.tracking`) and the Prefect flows implement the same
interface."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

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


# Without a terminal, a progress line every this many seconds (and one at the end): enough to
# see a run move in a DVC, CI or Prefect log without flooding it.
PLAIN_EVERY_S = 30.0


class Progress(Hooks):
    """Training progress on stderr (train.progress). On a terminal, a tqdm bar with the latest
    losses and images/s. Elsewhere (`dvc repro`, CI, Prefect and other logs that keep every byte) a
    bar redrawn with carriage returns would be one ever-growing line, so it prints plain lines
    instead: the first logged step, then one every `every_s` seconds, and the last step."""

    def __init__(self, total: int, start: int, enabled: bool, stream: TextIO | None = None,
                 every_s: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.start, self.last = total, start, start
        self.every_s, self.clock = every_s, clock
        self.bar = None
        self.plain = enabled and not _is_terminal(self.stream)
        if enabled and not self.plain:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                            file=self.stream)
        self.started = clock()
        self.printed_at: float | None = None
        self.printed_step = start
        self.latest = ""

    def on_log(self, step, losses, images_per_s):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "img/s": f"{images_per_s:,.0f}"})
        self.last = step
        if self.plain:
            self.latest = "  ".join([*(f"{k}={v:.4f}" for k, v in losses.items()), f"{images_per_s:,.0f} img/s"])
            now = self.clock()
            if self.printed_at is None or now - self.printed_at >= self.every_s:
                self._line(step, now)

    def on_eval(self, health):
        if self.bar is not None:
            shown = ", ".join(f"{k.removeprefix('probe_')}={v:.3g}" for k, v in health.metrics.items())
            self.bar.write(f"step {health.step}: {shown}")

    def on_end(self, step, path):
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.close()
        elif self.plain and step > self.start and step != self.printed_step:
            self._line(step, self.clock(), done=True)
        self.last = step

    def _line(self, step: int, now: float, done: bool = False) -> None:
        elapsed = now - self.started
        pct = 100 * step / max(self.total, 1)
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        left = f"done in {_hms(elapsed)}" if done or step >= self.total else (
            f"{_hms(elapsed)} elapsed, ~{_hms((self.total - step) / rate)} left" if rate > 0 else _hms(elapsed))
        parts = [f"train: step {step}/{self.total} ({pct:.0f}%)", self.latest, f"[{left}]"]
        print("  ".join(p for p in parts if p), file=self.stream, flush=True)
        self.printed_at, self.printed_step = now, step


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _hms(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{s:02d}s" if hours else f"{minutes}m{s:02d}s" if minutes else f"{s}s"

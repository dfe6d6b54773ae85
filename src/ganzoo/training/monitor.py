"""Training health, as the loop sees it: every `monitor.eval_every` steps a `Monitor` (implemented
in `ganzoo.evaluation.monitor`, handed in by the train stage) scores a fixed probe set; the loop
keeps the best checkpoint, raises the collapse alarm once, and stops early when asked to.

The loop only knows this interface, so training never imports the evaluation layer above it.
`BestKeeper` is the loop's bookkeeping: which step was best, how many evaluations since, which
alarms already fired; it goes into every checkpoint so a resumed run keeps its best-so-far record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Health:
    """One in-loop evaluation: metrics by name, the primary one, an alarm (None when healthy), and
    the fixed-probe sample sheet (uint8 HWC) for the trackers to show."""

    step: int
    metrics: dict[str, float]
    primary: str
    higher_is_better: bool
    alarm: str | None = None
    sheet: Any = None  # numpy uint8 HWC grid of the probe samples, or None
    fingerprint: dict | None = None  # the monitor's fingerprint: what produced these numbers

    @property
    def value(self) -> float:
        return self.metrics[self.primary]


class Monitor(Protocol):
    """What the loop calls; `check` runs under `variant.sampling()` (eval mode, global RNG untouched)."""

    description: str  # one line for the console: what is measured, in which feature space
    fingerprint: dict  # what produced the numbers (evaluation.fingerprint.make's parts and hash)

    def check(self, variant, step: int) -> Health: ...


@dataclass
class BestKeeper:
    best_step: int | None = None
    best_value: float | None = None
    since_best: int = 0  # evaluations without improvement (early stopping)
    alarms: list[str] = field(default_factory=list)  # alarm kinds already reported (once each)

    def update(self, health: Health) -> bool:
        """Record one evaluation; True when it is the best so far (a NaN never is)."""
        v = health.value
        better = math.isfinite(v) and (self.best_value is None or
                                       (v > self.best_value if health.higher_is_better else v < self.best_value))
        if better:
            self.best_step, self.best_value, self.since_best = health.step, v, 0
        else:
            self.since_best += 1
        return better

    def first_alarm(self, health: Health) -> bool:
        """True the first time an alarm of this kind (its text before ':') fires in the run."""
        if health.alarm is None:
            return False
        kind = health.alarm.partition(":")[0]
        if kind in self.alarms:
            return False
        self.alarms.append(kind)
        return True

    def state_dict(self) -> dict:
        return {"best_step": self.best_step, "best_value": self.best_value, "since_best": self.since_best,
                "alarms": list(self.alarms)}

    @classmethod
    def from_state(cls, state: dict | None) -> BestKeeper:
        return cls(**state) if state else cls()

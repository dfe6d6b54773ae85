"""What an orchestrator tells the MLflow run it is about to start: a name, a parent run, tags.

A Prefect flow knows its run's name and, for a sweep, the parent MLflow run its variants belong
to; the stages do not (they know nothing of Prefect). The flow wraps the stage call:

    with run_context(name="dcgan-digits-20250101-031500", parent_run_id=sweep_run, tags={...}):
        stages.train(cfg)

A context variable rather than a parameter, so that `stages.train` and the CLI need no tracking
arguments; the Tracker reads it once, on the thread that creates it (the background worker that
later creates the run would not see it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunContext:
    name: str | None = None  # the MLflow run's name; None: store.run_name's default
    parent_run_id: str | None = None  # makes the run a child (MLflow's `mlflow.parentRunId` tag)
    tags: dict[str, str] = field(default_factory=dict)


_current: ContextVar[RunContext | None] = ContextVar("ganzoo_run_context", default=None)


@contextmanager
def run_context(name: str | None = None, parent_run_id: str | None = None,
                tags: dict[str, str] | None = None) -> Iterator[RunContext]:
    ctx = RunContext(name, parent_run_id, {k: str(v) for k, v in (tags or {}).items()})
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def current() -> RunContext:
    return _current.get() or RunContext()

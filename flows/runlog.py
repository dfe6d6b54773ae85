"""What a flow run tells Prefect's UI beyond `Finished in state Completed()`: the stages' own
one-line summaries in the run log (the same words `ganzoo <stage>` prints), the training loop's
resume decision, losses and images/s, a progress artifact that follows the steps, and run names
that say what ran (`dcgan-digits-20250101-031500`).

The stages know nothing of Prefect: the flow hands `TrainingLog` to `stages.train` as one more
`ganzoo.training.hooks.Hooks` observer, beside the progress display and MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from ganzoo import stages
from ganzoo.config import load_from_args
from ganzoo.errors import GanzooError
from ganzoo.training.hooks import Hooks
from ganzoo.variants import registry

# A log line (and a progress-artifact update, one API call) at most this often: a GPU run logs
# losses many times a second, which would flood the run log and the server.
LOG_EVERY_S = 10.0


def logger():
    """The current Prefect run's logger (task or flow)."""
    from prefect import get_run_logger

    return get_run_logger()


class TrainingLog(Hooks):
    """The training loop seen from a Prefect run: its resume decision, then the latest losses and
    images/s every `every_s` seconds and at the end, in the run log; and a progress artifact
    (`key`) at the share of steps done. A failing artifact call is logged once and never stops training."""

    def __init__(self, key: str, log=None, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.key, self.log, self.every_s, self.clock = key, log, every_s, clock
        self.total, self.start = 1, 0
        self.artifact_id = None
        self.logged_at: float | None = None
        self.artifact_failed = False

    def on_start(self, cfg, variant, start_step):
        self.log = self.log or logger()
        self.total, self.start = cfg.train.steps, start_step
        where = f"resuming at step {start_step}" if start_step else "from scratch"
        self.log.info(f"training {cfg.variant} {where} to step {cfg.train.steps} "
                      f"({cfg.train.batch_size} images a step, device {cfg.train.device})")
        self._progress(start_step, create=True)

    def on_log(self, step, losses, images_per_s):
        now = self.clock()
        if self.logged_at is not None and now - self.logged_at < self.every_s:
            return
        self.logged_at = now
        assert self.log is not None, "on_start comes first"
        self.log.info(f"step {step}/{self.total}  {stages.describe_losses(losses)}  {images_per_s:,.0f} images/s")
        self._progress(step)

    def on_end(self, step, path):
        assert self.log is not None, "on_start comes first"
        self.log.info(f"reached step {step}: {path}")
        self._progress(step)

    def _progress(self, step: int, create: bool = False) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if self.artifact_failed:
            return
        percent = min(100.0, 100.0 * step / max(self.total, 1))
        try:
            if create:
                self.artifact_id = create_progress_artifact(percent, key=self.key,
                                                            description=f"training steps done ({self.total} in all)")
            elif self.artifact_id is not None:
                update_progress_artifact(self.artifact_id, percent)
        except Exception as err:  # noqa: BLE001 -- an observer: a server hiccup must not stop training
            self.artifact_failed = True
            if self.log is not None:
                self.log.warning(f"progress artifact {self.key!r} not updated ({type(err).__name__}: {err}); "
                                 "training continues")


# --------------------------------------------------------------------------- run names

def stamp(now: datetime | None = None) -> str:
    return (now or datetime.now()).strftime("%Y%m%d-%H%M%S")


def pipeline_name(params: str | None, overrides: list[str] | None, now: datetime | None = None) -> str:
    """`<variant>-<data source>-<time>` as the run will resolve them; `ganzoo-<time>` when the
    params are wrong (the config task then names the mistake)."""
    try:
        cfg = registry.resolve(load_from_args(params, list(overrides or [])))
    except GanzooError:
        return f"ganzoo-{stamp(now)}"
    return f"{cfg.variant}-{cfg.data.source}-{stamp(now)}"


def pipeline_run_name() -> str:
    """flow_run_name of the pipeline flow, from the run's own parameters."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    overrides = [*(p.get("overrides") or []), *([f"variant={p['variant']}"] if p.get("variant") else [])]
    return pipeline_name(p.get("params", "params.yaml"), overrides)

"""MLflow tracking of training and evaluation runs.

One run per training: the resolved config as flattened params, tags (variant, dataset, git
commit, DVC stage), losses and images/s (throttled to `tracking.log_every` steps; the loop hands
them over as host floats every `train.log_every` steps, so tracking adds no device sync), a sample
sheet every `tracking.image_every` steps and the final checkpoint as an artifact. A resumed
training continues its run (found through the sidecar beside the checkpoint); `evaluate` logs
its metrics and sheets into it too.

Tracking never breaks training: the first MLflow failure (an unreachable server, a locked or
unwritable store) prints one line to stderr and the tracker goes quiet; the checkpoint, loss
history and metrics are still written locally by the loop and the evaluation.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ganzoo.config import Config, flatten
from ganzoo.paths import RunPaths
from ganzoo.tracking import sheets, store
from ganzoo.training.hooks import Hooks

_BATCH_PARAMS = 100  # MLflow's per-request limit on params


def _now_ms() -> int:
    return int(time.time() * 1000)


class NullTracker:
    """What non-zero DDP ranks get: same interface, does nothing."""

    active = False

    def training_hooks(self) -> Hooks:
        return Hooks()

    def log_evaluation(self, checkpoint_path, metrics: dict, eval_dir: Path) -> None:
        pass

    def close(self) -> None:
        pass


class Tracker(NullTracker):
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.uri = store.resolve_uri(cfg.tracking.uri)
        self.client = None
        self.experiment_id = None
        self.run_id: str | None = None
        self.finished = False
        self._warned = False
        self._training = False
        why = store.unreachable_reason(self.uri)
        if why is not None:
            self._fail(f"tracking server {self.uri} is unreachable ({why})")
            return
        try:
            self.client, self.experiment_id = store.open_client(self.uri, cfg.tracking.experiment)
        except Exception as exc:  # noqa: BLE001 -- tracking must never stop training
            self._fail(self._describe(exc))

    @property
    def active(self) -> bool:  # type: ignore[override]
        return self.client is not None

    @property
    def api(self) -> Any:  # an MlflowClient (mlflow is imported lazily)
        """The MLflow client, for tracking actions: they run through `_safely`, which calls them
        only while the tracker is active, so the client is there."""
        assert self.client is not None, "a tracking action ran outside _safely"
        return self.client

    def _fail(self, what: str) -> None:
        self.client = None
        if not self._warned:
            self._warned = True
            print(f"{store.WARN_PREFIX} {what}; continuing without tracking "
                  f"(checkpoints and metrics are still written locally)", file=sys.stderr)

    def _describe(self, exc: Exception) -> str:
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__} at {self.uri}: {lines[0][:200] if lines else ''}"

    def _safely(self, fn, *args):
        """Run one tracking action; the first failure disables tracking for the rest of the run."""
        if not self.active:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 -- tracking must never stop training
            self._fail(self._describe(exc))
            return None

    # ------------------------------------------------------------------ runs
    def _new_run(self, cfg: Config, extra_tags: dict | None = None) -> str:
        from mlflow.entities import Param

        run = self.api.create_run(self.experiment_id, run_name=store.run_name(cfg),
                                  tags={**store.run_tags(cfg), **(extra_tags or {})})
        self._log_params(run.info.run_id, [Param(k, str(v)) for k, v in flatten(cfg.model_dump(mode="json")).items()])
        return run.info.run_id

    def _log_params(self, run_id: str, params: list) -> None:
        for i in range(0, len(params), _BATCH_PARAMS):
            self.api.log_batch(run_id, params=params[i:i + _BATCH_PARAMS])

    def _resume_run(self, run_id: str, cfg: Config, start_step: int) -> None:
        """Log params that a resumable change (train.steps...) altered as tags: MLflow params
        are immutable."""
        from mlflow.entities import Param, RunTag

        logged = self.api.get_run(run_id).data.params
        new, changed = [], []
        for k, v in flatten(cfg.model_dump(mode="json")).items():
            if k not in logged:
                new.append(Param(k, str(v)))
            elif logged[k] != str(v):
                changed.append(RunTag(f"ganzoo.resumed.{k}", str(v)))
        changed.append(RunTag("ganzoo.resumed_from_step", str(start_step)))
        self._log_params(run_id, new)
        for i in range(0, len(changed), _BATCH_PARAMS):
            self.api.log_batch(run_id, tags=changed[i:i + _BATCH_PARAMS])
        self.api.update_run(run_id, status="RUNNING")

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        self.api.log_batch(self.run_id, metrics=[Metric(k, v, ts, step) for k, v in values.items()])

    def training_hooks(self) -> Hooks:
        return _TrainingHooks(self)

    # ------------------------------------------------------------------ evaluation
    def log_evaluation(self, checkpoint_path, metrics: dict, eval_dir: Path) -> None:
        self._safely(self._log_evaluation, Path(checkpoint_path), metrics, Path(eval_dir))

    def _log_evaluation(self, checkpoint_path: Path, metrics: dict, eval_dir: Path) -> None:
        from mlflow.entities import RunTag

        run_id, side = store.sidecar_run(self.api, self.uri, checkpoint_path)
        own_run = run_id is None  # no training run in this store: evaluation gets its own
        if own_run:
            run_id = self._new_run(self.cfg, {"ganzoo.checkpoint": str(checkpoint_path), "ganzoo.stage": "evaluate"})
        self.run_id = run_id
        # At the checkpoint's step, so the metrics line up with the losses that led to them.
        step = metrics.get("step", (side or {}).get("step", 0))
        step = int(step) if isinstance(step, (int, float)) else 0
        self._log_metrics({f"eval/{k}": v for k, v in store.numeric_metrics(metrics).items()}, step)
        described = [RunTag(f"eval.{k}", str(v)) for k, v in metrics.items()
                     if k in store.EVAL_SETTINGS or isinstance(v, (str, bool))]
        self.api.log_batch(run_id, tags=described[:_BATCH_PARAMS])
        if eval_dir.is_dir():
            for f in sorted(eval_dir.rglob("*")):
                if f.is_file() and f.suffix.lower() in (".png", ".json", ".csv"):
                    rel = f.parent.relative_to(eval_dir).as_posix()
                    self.api.log_artifact(run_id, str(f), "eval" if rel == "." else f"eval/{rel}")
        if own_run:
            self.api.set_terminated(run_id, "FINISHED")

    def close(self) -> None:
        if self.active and self.run_id and not self.finished and self._training:
            self._safely(self.api.set_terminated, self.run_id, "FAILED")


class _TrainingHooks(Hooks):
    """Throttles, samples and forwards the loop's events to the tracker."""

    def __init__(self, tracker: Tracker):
        self.t = tracker
        self.variant = None
        self.inputs = None
        self.pending: dict[str, float] = {}
        self.pending_steps = 0
        self.prev_step = 0
        self.last_logged = 0
        self.last_image = 0
        self.ips = 0.0

    def on_start(self, cfg, variant, start_step):
        self.cfg, self.variant, self.prev_step = cfg, variant, start_step
        self.last_logged = self.last_image = start_step
        self.paths = RunPaths.of(cfg)
        self.t._safely(self._start, cfg, start_step)

    def _start(self, cfg, start_step):
        t = self.t
        t._training = True
        last = self.paths.last  # the checkpoint the loop resumed from
        run_id, _ = store.sidecar_run(t.client, t.uri, last) if start_step > 0 else (None, None)
        if run_id is not None:
            t._resume_run(run_id, cfg, start_step)
        else:
            run_id = t._new_run(cfg)
        t.run_id = run_id
        # A resumed run owns the checkpoint it resumed from; a fresh one owns none until it saves.
        self._write_sidecar(start_step, last if start_step > 0 else None)
        if self.variant.translates:
            self.inputs = sheets.translation_inputs(cfg, paired=self.variant.data.kind == "paired")

    def _write_sidecar(self, step: int, checkpoint: Path | None = None) -> None:
        store.write_sidecar(self.paths.checkpoint_dir, {"run_id": self.t.run_id, "experiment_id": self.t.experiment_id,
                                       "tracking_uri": self.t.uri, "step": step,
                                       "checkpoint": store.checkpoint_stamp(checkpoint) if checkpoint else None})

    def on_log(self, step, losses, images_per_s):
        if not self.t.active:
            return
        weight = step - self.prev_step
        self.prev_step = step
        for k, v in losses.items():
            self.pending[k] = self.pending.get(k, 0.0) + v * weight
        self.pending_steps += weight
        self.ips = images_per_s
        every = self.cfg.tracking.log_every
        if step // every > self.last_logged // every or step >= self.cfg.train.steps:
            self.t._safely(self._flush, step)
        if step // self.cfg.tracking.image_every > self.last_image // self.cfg.tracking.image_every:
            self.t._safely(self._image, step)

    def _flush(self, step: int) -> None:
        """The mean of each loss over the steps since the last logged point."""
        if not self.pending_steps:
            return
        values = {k: v / self.pending_steps for k, v in self.pending.items()}
        values["images_per_s"] = self.ips
        self.pending, self.pending_steps, self.last_logged = {}, 0, step
        self.t._log_metrics(values, step)

    def _image(self, step: int) -> None:
        self.last_image = step
        client = self.t.client
        assert client is not None, "run through the tracker's _safely, only while it is active"
        client.log_image(self.t.run_id, sheets.sample_sheet(self.variant, self.inputs), key="samples", step=step)

    def on_checkpoint(self, step, path):
        if self.t.active:
            self.t._safely(self._write_sidecar, step, Path(path))

    def on_end(self, step, path):
        if not self.t.active:
            return
        self.t._safely(self._flush, step)
        if self.last_image != step:
            self.t._safely(self._image, step)
        self.t._safely(self._end, step, Path(path))

    def _end(self, step: int, path: Path) -> None:
        t, client = self.t, self.t.client
        assert client is not None, "run through the tracker's _safely, only while it is active"
        if path.is_file():
            client.log_artifact(t.run_id, str(path), "checkpoint")
        history = self.paths.history
        if history.is_file():
            client.log_artifact(t.run_id, str(history), "metrics")
        self._write_sidecar(step, path)
        client.set_terminated(t.run_id, "FINISHED")
        t.finished = True


def open_tracker(cfg: Config) -> NullTracker:
    """A Tracker for rank 0 (or a single process); a no-op for the other DDP ranks."""
    if int(os.environ.get("RANK", "0")) != 0:
        return NullTracker()
    return Tracker(cfg)

"""MLflow tracking of training and evaluation runs.

One run per training, named after the flow or DVC experiment that ran it, else variant, data and
a short id (`store.run_name`): the params that mean something (`store.run_params`: no nulls, paths
or logging settings, only this variant's model section) and the whole resolved config as the
`config.yaml` artifact, MLflow's context tags (user, source, git commit) with ganzoo's (variant,
dataset, DVC stage and experiment, a sweep's parent run), the prepared dataset as the run's input
(its content hash as digest), system metrics (`tracking.system`), losses and images/s (throttled
to `tracking.log_every` steps; the loop hands them over as host floats every `train.log_every`
steps, so tracking adds no device sync), a sample sheet every `tracking.image_every` steps and the
final checkpoint as an artifact. A resumed training continues its run (found through the sidecar
beside the checkpoint); `evaluate` logs its metrics and sheets into it too, with client calls that
leave the finished run's status and end time alone (MLflow only moves `end_time` when a run is
terminated), so the run's duration stays the training's.

Tracking never breaks or stalls training. An http(s) server that does not answer its health
check at the start is reported once and tracking stays off. Everything else runs on a background
thread (`tracking.background`): the training thread computes what to log (loss means, sample
sheets) and enqueues it; a failing store (a server that stops answering, a locked SQLite file) is
retried with back-off while the queue buffers, and logging resumes when it answers. `close()`
always ends the run (FINISHED, FAILED, or KILLED after Ctrl-C), waiting at most
`tracking.flush_timeout` seconds; what could still not be logged is printed in one line and
recorded under `unlogged` in the sidecar, and the next ganzoo command that reaches the store
marks such a run's end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from ganzoo.config import Config
from ganzoo.paths import RunPaths
from ganzoo.tracking import background, context, sheets, store
from ganzoo.tracking.system import SystemMetrics
from ganzoo.training.hooks import Hooks

_BATCH_PARAMS = 100  # MLflow's per-request limit on params


def _now_ms() -> int:
    return int(time.time() * 1000)


class NoRun(ValueError):
    """An action for a run that could not be created: it is dropped (counted), not retried."""


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
        # Read here, on the caller's thread: the worker thread that creates the run cannot see it.
        self.context = context.current()
        self.system = SystemMetrics()
        self.uri = store.resolve_uri(cfg.tracking.uri)
        self.client = None
        self.experiment_id = None
        self.run_id: str | None = None
        self._training = False
        self._sidecar_dir: Path | None = None  # where this run's sidecar lives (training)
        self._side_lock = threading.Lock()
        self._sealed = False  # close() wrote the final record: the worker writes no more sidecars
        self._creating: str | None = None  # a run created by an action that may still be retried
        self._latest: tuple[int, list[int] | None] = (0, None)  # the training thread's newest (step, stamp)
        self.best_stamp: list[int] | None = None  # best.pt's stamp, when the monitor kept one
        self._end_submitted = False  # training reached its end and queued FINISHED
        self.worker: background.Worker | None = None
        why = store.unreachable_reason(self.uri)
        if why is not None:
            print(f"{store.WARN_PREFIX} tracking server {self.uri} is unreachable ({why}); continuing without "
                  f"tracking (checkpoints and metrics are still written locally)", file=sys.stderr)
            return
        store.tune_http_client(self.uri)
        self.worker = background.Worker(self.uri)
        self.submit(self._connect, kind="run setup", essential=True)

    @property
    def active(self) -> bool:  # type: ignore[override]
        return self.worker is not None and not self.worker.abandoned

    @property
    def api(self) -> Any:  # an MlflowClient (mlflow is imported lazily)
        """The MLflow client, for actions on the worker thread (after `_connect` succeeded)."""
        if self.client is None:
            raise NoRun(f"no MLflow client for {self.uri}")
        return self.client

    def submit(self, fn, *args, kind: str, count: int = 1, essential: bool = False) -> None:
        """Hand one tracking action to the background worker (returns at once)."""
        if self.worker is not None:
            self.worker.submit(fn, *args, kind=kind, count=count, essential=essential)

    def _connect(self) -> None:
        self.client, self.experiment_id = store.open_client(self.uri, self.cfg.tracking.experiment)

    def _run(self) -> str:
        if self.run_id is None:
            raise NoRun("the MLflow run was not created")
        return self.run_id

    # ------------------------------------------------------------------ runs (worker thread)
    def _new_run(self, cfg: Config, extra_tags: dict | None = None) -> str:
        """Create a run and log its params. Retried as a whole after a failure, so the run id is
        kept as soon as it exists: a retry logs the (same) params again, it never makes a second run."""
        from mlflow.entities import Param

        if self._creating is None:
            run = self.api.create_run(self.experiment_id, run_name=store.run_name(cfg, self.context),
                                      tags={**store.run_tags(cfg, self.context), **(extra_tags or {})})
            self._creating = run.info.run_id
        self._log_params(self._creating, [Param(k, v) for k, v in store.run_params(cfg).items()])
        self._log_config(self._creating, cfg)
        run_id, self._creating = self._creating, None
        return run_id

    def _log_config(self, run_id: str, cfg: Config) -> None:
        """The whole resolved config (paths and nulls included), beside the params' summary of it."""
        text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        self.api.log_text(run_id, text, "config.yaml")

    def _log_params(self, run_id: str, params: list) -> None:
        for i in range(0, len(params), _BATCH_PARAMS):
            self.api.log_batch(run_id, params=params[i:i + _BATCH_PARAMS])

    def _resume_run(self, run_id: str, cfg: Config, start_step: int) -> None:
        """Log params that a resumable change (train.steps...) altered as tags: MLflow params
        are immutable."""
        from mlflow.entities import Param, RunTag

        logged = self.api.get_run(run_id).data.params
        new, changed = [], []
        for k, v in store.run_params(cfg).items():
            if k not in logged:
                new.append(Param(k, v))
            elif logged[k] != v:
                changed.append(RunTag(f"ganzoo.resumed.{k}", v))
        changed.append(RunTag("ganzoo.resumed_from_step", str(start_step)))
        self._log_params(run_id, new)
        for i in range(0, len(changed), _BATCH_PARAMS):
            self.api.log_batch(run_id, tags=changed[i:i + _BATCH_PARAMS])
        self.api.update_run(run_id, status="RUNNING")
        self._log_config(run_id, cfg)  # the config it continues with (config.yaml is replaced)

    def _log_metrics(self, values: dict[str, float], step: int, ts: int) -> None:
        from mlflow.entities import Metric

        self.api.log_batch(self._run(), metrics=[Metric(k, v, ts, step) for k, v in values.items()])

    def _terminate(self, status: str) -> None:
        self.system.stop()  # its last samples belong to the run, before the run ends
        self.api.set_terminated(self._run(), status)

    def _log_dataset(self, run_id: str, cfg: Config) -> None:
        """The prepared data as the run's input (MLflow's Datasets tab): its content hash is the
        digest, so two runs on the same data show the same dataset."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        from ganzoo.data.prepared import prepared_path

        folder = prepared_path(cfg.data)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return  # nothing prepared to describe (the loop would have refused to train)
        dataset = Dataset(name=folder.name, digest=str(manifest.get("content_hash", ""))[:36], source_type="local",
                          source=json.dumps({"uri": str(folder.resolve())}),
                          profile=json.dumps({k: manifest.get(k) for k in ("count", "shape", "kind", "source")}))
        self.api.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])

    def _start_system_metrics(self, run_id: str, resumed: bool) -> None:
        why = self.system.start(run_id, self.uri, resume=resumed)
        if why:
            print(f"{store.WARN_PREFIX} {why}", file=sys.stderr)

    def _settle(self, side: dict | None) -> None:
        """A previous command could not record its run's end (the store was away): record it now,
        if that run is in this store and still RUNNING."""
        pending = ((side or {}).get("unlogged") or {}).get("run_end")
        if not pending or side is None or side.get("tracking_uri") != self.uri or not side.get("run_id"):
            return
        from mlflow.exceptions import MlflowException

        try:
            if self.api.get_run(side["run_id"]).info.status == "RUNNING":
                self.api.set_terminated(side["run_id"], pending)
        except MlflowException:
            return  # deleted meanwhile: nothing to settle

    def training_hooks(self) -> Hooks:
        return _TrainingHooks(self)

    # ------------------------------------------------------------------ the sidecar (local)
    def write_sidecar(self, step: int, stamp: list[int] | None, unlogged: dict | None = None) -> None:
        """The sidecar beside the checkpoint: this run, its store and the checkpoint it wrote."""
        if self._sidecar_dir is None:
            return
        with self._side_lock:
            if self._sealed:
                return
            side: dict[str, Any] = {"run_id": self.run_id, "experiment_id": self.experiment_id,
                                    "tracking_uri": self.uri, "step": step, "checkpoint": stamp}
            if self.best_stamp is not None:  # best.pt, written by this run too
                side["best"] = self.best_stamp
            if unlogged:
                side["unlogged"] = unlogged
                self._sealed = True
            store.write_sidecar(self._sidecar_dir, side)

    # ------------------------------------------------------------------ evaluation
    def log_evaluation(self, checkpoint_path, metrics: dict, eval_dir: Path) -> None:
        """Queue the evaluation's metrics, descriptions and files for the checkpoint's run."""
        self._eval: dict[str, Any] = {"own_run": False, "step": 0}
        self.submit(self._eval_run, Path(checkpoint_path), metrics, kind="evaluation run", essential=True)
        self.submit(self._eval_metrics, metrics, kind="evaluation metrics")
        folder = Path(eval_dir)
        if folder.is_dir():
            for f in sorted(folder.rglob("*")):
                if f.is_file() and f.suffix.lower() in (".png", ".json", ".csv"):
                    rel = f.parent.relative_to(folder).as_posix()
                    self.submit(self._eval_file, str(f), "eval" if rel == "." else f"eval/{rel}",
                                kind="evaluation files")
        self.submit(self._eval_finish, kind="run end (FINISHED)", essential=True)

    def _eval_run(self, checkpoint_path: Path, metrics: dict) -> None:
        if self.run_id is not None:  # a retry after the run was found or made
            return
        run_id, side = store.sidecar_run(self.api, self.uri, checkpoint_path)
        self._settle(side)
        if run_id is None:  # no training run in this store: evaluation gets its own
            run_id = self._new_run(self.cfg, {"ganzoo.checkpoint": str(checkpoint_path), "ganzoo.stage": "evaluate"})
            self._eval["own_run"] = True
        self.run_id = run_id
        # At the checkpoint's step, so the metrics line up with the losses that led to them.
        step = metrics.get("step", (side or {}).get("step", 0))
        self._eval["step"] = int(step) if isinstance(step, (int, float)) else 0

    def _eval_metrics(self, metrics: dict) -> None:
        from mlflow.entities import RunTag

        scores = {f"eval/{k}": v for k, v in store.numeric_metrics(metrics).items()}
        self._log_metrics(scores, self._eval["step"], _now_ms())
        described = [RunTag(f"eval.{k}", str(v)) for k, v in metrics.items()
                     if k in store.EVAL_SETTINGS or isinstance(v, (str, bool))]
        self.api.log_batch(self._run(), tags=described[:_BATCH_PARAMS])

    def _eval_file(self, path: str, where: str) -> None:
        self.api.log_artifact(self._run(), path, where)

    def _eval_finish(self) -> None:
        if self._eval["own_run"]:
            self._terminate("FINISHED")

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """End the run (FAILED, or KILLED after Ctrl-C, when training did not reach its end) and
        wait up to tracking.flush_timeout s for the queue; record locally what was not logged."""
        if self.worker is None:
            return
        if self._training and not self._end_submitted:
            in_flight = sys.exc_info()[0]  # close() runs in the stage's `finally`
            end = "KILLED" if in_flight is not None and issubclass(in_flight, KeyboardInterrupt) else "FAILED"
            self.submit(self._terminate, end, kind=f"run end ({end})", essential=True)
        worker, self.worker = self.worker, None  # closed once; the tracker is inactive from here
        outcome = worker.close(self.cfg.tracking.flush_timeout)
        self.system.stop(wait_s=0)  # the run's end (and with it the sampler's) was not reached
        if not outcome:
            return
        record: dict[str, Any] = {"what": outcome.summary(), "reason": outcome.reason, "at": _now_ms()}
        ended = next((k for k in outcome.lost if k.startswith("run end (")), None)
        if ended:  # the status a later command records for this run (Tracker._settle)
            record["run_end"] = ended[len("run end ("):-1]
        where = ""
        if self._training and self._sidecar_dir is not None:  # the newest checkpoint, not the last sidecar written
            self.write_sidecar(*self._latest, unlogged=record)
            where = f"; recorded in {self._sidecar_dir / store.SIDECAR}"
        print(f"{store.WARN_PREFIX} not logged to {self.uri}: {outcome.summary()} "
              f"({outcome.reason or 'the store did not answer'}){where}", file=sys.stderr)


class _TrainingHooks(Hooks):
    """Throttles, samples and forwards the loop's events to the tracker's background worker."""

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
        self._sheet_failed = False
        self.probes: list = []  # the monitor's probe sheets, for the evolution GIF
        self.fingerprinted = False  # the probe fingerprint is tagged once per run

    def on_start(self, cfg, variant, start_step):
        self.cfg, self.variant, self.prev_step = cfg, variant, start_step
        self.last_logged = self.last_image = start_step
        self.paths = RunPaths.of(cfg)
        if not self.t.active:
            return
        self.t._training = True
        self.t._sidecar_dir = self.paths.checkpoint_dir
        # A resumed run owns the checkpoint it resumed from; a fresh one owns none until it saves.
        stamp = store.checkpoint_stamp(self.paths.last) if start_step > 0 else None
        self.t._latest = (start_step, stamp)
        self.t.submit(self._start, cfg, start_step, stamp, kind="run setup", essential=True)
        if self.variant.translates:
            self.inputs = sheets.translation_inputs(cfg, paired=self.variant.data.kind == "paired")

    def _start(self, cfg, start_step: int, stamp) -> None:
        t = self.t
        if t.run_id is None:  # (a retry after the run was set up only writes the sidecar)
            last = self.paths.last  # the checkpoint the loop resumed from
            side = store.read_sidecar(self.paths.checkpoint_dir)
            run_id, _ = store.sidecar_run(t.api, t.uri, last) if start_step > 0 else (None, None)
            resumed = run_id is not None
            if run_id is not None:
                t._resume_run(run_id, cfg, start_step)
            else:
                t._settle(side)
                run_id = t._new_run(cfg)
                t._log_dataset(run_id, cfg)
            t.run_id = run_id
            t._start_system_metrics(run_id, resumed)
        t.write_sidecar(start_step, stamp)

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
            self._flush(step)
        if step // self.cfg.tracking.image_every > self.last_image // self.cfg.tracking.image_every:
            self._image(step)

    def _flush(self, step: int) -> None:
        """The mean of each loss over the steps since the last logged point."""
        if not self.pending_steps:
            return
        values = {k: v / self.pending_steps for k, v in self.pending.items()}
        values["images_per_s"] = self.ips
        self.pending, self.pending_steps, self.last_logged = {}, 0, step
        self.t.submit(self.t._log_metrics, values, step, _now_ms(), kind="metric points")

    def _image(self, step: int) -> None:
        """Draw the sheet here (it runs the generator, which only this thread may touch), log it there."""
        self.last_image = step
        try:
            sheet = sheets.sample_sheet(self.variant, self.inputs)
        except Exception as exc:  # noqa: BLE001 -- a sheet is a picture for the UI, never worth a run
            if not self._sheet_failed:
                self._sheet_failed = True
                print(f"{store.WARN_PREFIX} no sample sheet ({background.first_line(exc)})", file=sys.stderr)
            return
        self.t.submit(lambda: self.t.api.log_image(self.t._run(), sheet, key="samples", step=step),
                      kind="sample sheets")

    def on_eval(self, health):
        """The monitor's numbers as metrics by step, and the fixed probe's sheet: the same samples at
        every evaluation, so the UI's step slider shows them evolve (a GIF of all at the end)."""
        if not self.t.active:
            return
        if health.fingerprint and not self.fingerprinted:  # once: the probe's numbers say what made them
            self.fingerprinted = True
            fp = dict(health.fingerprint)
            self.t.submit(lambda: (self.t.api.set_tag(self.t._run(), "fingerprint_probe", fp["hash"]),
                                   self.t.api.log_dict(self.t._run(), fp, "monitor/probe_fingerprint.json")),
                          kind="probe fingerprint")
        self.t.submit(self.t._log_metrics, {f"health/{k}": v for k, v in health.metrics.items()}, health.step,
                      _now_ms(), kind="metric points")
        if health.sheet is not None:
            self.probes.append(health.sheet)
            self.t.submit(lambda: self.t.api.log_image(self.t._run(), health.sheet, key="probe", step=health.step),
                          kind="sample sheets")

    def on_alarm(self, step, alarm):
        if self.t.active:
            self.t.submit(lambda: self.t.api.set_tag(self.t._run(), "ganzoo.alarm", f"step {step}: {alarm}"),
                          kind="alarm tag")

    def on_checkpoint(self, step, path):
        if Path(path) != self.paths.last:  # best.pt: recorded beside last.pt's stamp in the sidecar
            if self.t.active and self.t._latest is not None:
                self.t.best_stamp = store.checkpoint_stamp(path)
                self.t.submit(self.t.write_sidecar, *self.t._latest, kind="sidecar updates")
            return
        if self.t.active:
            self.t._latest = (step, store.checkpoint_stamp(path))
            self.t.submit(self.t.write_sidecar, *self.t._latest, kind="sidecar updates")

    def on_end(self, step, path):
        if not self.t.active:
            return
        self._flush(step)
        if self.last_image != step:
            self._image(step)
        path, history = Path(path), self.paths.history
        self.t.submit(self._end_files, path, history, kind="checkpoint and history artifacts")
        if len(self.probes) > 1:
            self.t.submit(self._probe_gif, list(self.probes), kind="probe evolution GIF")
        self.t._latest = (step, store.checkpoint_stamp(path))
        self.t.submit(self.t.write_sidecar, *self.t._latest, kind="sidecar updates")
        self.t.submit(self.t._terminate, "FINISHED", kind="run end (FINISHED)", essential=True)
        self.t._end_submitted = True

    def _probe_gif(self, frames: list) -> None:
        import tempfile

        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            gif = Path(tmp) / "probe_evolution.gif"
            images = [Image.fromarray(f) for f in frames]
            images[0].save(gif, save_all=True, append_images=images[1:], duration=400, loop=0)
            self.t.api.log_artifact(self.t._run(), str(gif), "monitor")

    def _end_files(self, path: Path, history: Path) -> None:
        run_id = self.t._run()
        if path.is_file():
            self.t.api.log_artifact(run_id, str(path), "checkpoint")
        if history.is_file():
            self.t.api.log_artifact(run_id, str(history), "metrics")


def open_tracker(cfg: Config) -> NullTracker:
    """A Tracker for rank 0 (or a single process); a no-op for the other DDP ranks."""
    if int(os.environ.get("RANK", "0")) != 0:
        return NullTracker()
    return Tracker(cfg)

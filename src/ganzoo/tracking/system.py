"""System metrics of a training run (CPU, memory, disk, network; GPU where `nvidia-ml-py`/`pynvml`
or AMD's `pyrsmi` is installed): MLflow's own `SystemMetricsMonitor`, what `mlflow.start_run(
log_system_metrics=True)` starts, tied to a run that ganzoo creates with the client.

It samples on its own daemon thread every `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` seconds (10 by
default) and logs `system/*` metrics by sample. It never stalls or breaks training: a missing
psutil (which MLflow's CPU monitor imports) switches it off with one line, a missing GPU library
drops only the GPU metrics (MLflow's own fallback), and stopping waits a bounded time for the
sampler thread. `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false` switches it off as it does for MLflow.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

# MLflow announces every start and stop at INFO on stderr, between ganzoo's progress lines; its
# warnings (a failed sample) still show.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)

STOP_WAIT_S = 5.0  # the sampler checks its stop event between samples; a store call can take longer


def enabled() -> bool:
    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").strip().lower() not in ("false", "0", "no")


class SystemMetrics:
    """Start with `start(run_id, uri)`; `stop()` ends sampling and logs what is pending."""

    def __init__(self) -> None:
        self.monitor: Any = None

    def start(self, run_id: str, uri: str, resume: bool = False) -> str | None:
        """Start sampling into run_id; -> why not (one line), or None when it runs."""
        if not enabled():
            return None
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as exc:  # psutil (or another optional dependency) is not installed
            return f"no system metrics ({exc}); pip install psutil to log CPU/memory/disk metrics"
        try:
            # resume_logging: a resumed run continues its system metrics' steps instead of
            # restarting at 0 over the earlier points.
            self.monitor = SystemMetricsMonitor(run_id, resume_logging=resume, tracking_uri=uri)
            self.monitor.start()
        except Exception as exc:  # noqa: BLE001 -- telemetry of the machine is never worth the run
            self.monitor = None
            return f"no system metrics ({type(exc).__name__}: {exc})"
        return None

    @property
    def gpu(self) -> bool:
        """Whether MLflow found a GPU library (and a GPU) to sample."""
        return self.monitor is not None and any("GPU" in type(m).__name__ or "ROCM" in type(m).__name__
                                                for m in self.monitor.monitors)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop sampling and log the samples still held, waiting at most about wait_s for the
        sampler thread (MLflow's own `finish()` joins it without a limit)."""
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        done = threading.Event()

        def finish() -> None:
            try:
                _one_point_at_least(monitor)
                monitor.finish()
            except Exception:  # noqa: BLE001 -- MLflow logs its own warning; nothing to add
                pass
            done.set()

        threading.Thread(target=finish, daemon=True, name="ganzoo-system-metrics-stop").start()
        done.wait(wait_s)


def _one_point_at_least(monitor: Any) -> None:
    """A run shorter than one sampling interval (or whose sampler thread started late on a busy
    machine) would end with no system metrics at all: stop the sampler, and when it published
    nothing, take and publish one sample now. Uses MLflow's monitor internals, so each is looked
    up and anything unexpected leaves MLflow's own finish() to do what it does."""
    event, thread = getattr(monitor, "_shutdown_event", None), getattr(monitor, "_process", None)
    if event is None or thread is None or not hasattr(monitor, "_logging_step"):
        return
    event.set()
    thread.join()
    if monitor._logging_step == 0:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())

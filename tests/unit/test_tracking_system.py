"""System metrics never stall or break training: a missing psutil (or other import) switches them
off with a reason, `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false` keeps them off, and stopping waits
a bounded time for a sampler that hangs."""

import sys
import threading
import time

from ganzoo.tracking.system import SystemMetrics


def test_a_missing_dependency_switches_them_off_with_a_reason(monkeypatch):
    # What `import psutil` failing inside MLflow's monitor module looks like to ganzoo.
    monkeypatch.setitem(sys.modules, "mlflow.system_metrics.system_metrics_monitor", None)
    metrics = SystemMetrics()
    why = metrics.start("run", "sqlite:////nowhere.db")
    assert why is not None and why.startswith("no system metrics") and "psutil" in why
    metrics.stop()  # nothing started: returns at once


def test_switched_off_by_mlflows_own_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    metrics = SystemMetrics()
    assert metrics.start("run", "sqlite:////nowhere.db") is None and metrics.monitor is None


def test_stopping_a_hung_sampler_is_bounded():
    release = threading.Event()

    class Hung:
        monitors: list = []

        def finish(self):
            release.wait(30)  # a store call that does not return

    metrics = SystemMetrics()
    metrics.monitor = Hung()
    started = time.monotonic()
    metrics.stop(wait_s=0.2)
    assert time.monotonic() - started < 2 and metrics.monitor is None
    release.set()


def test_a_failing_monitor_is_reported_not_raised(monkeypatch):
    import mlflow.system_metrics.system_metrics_monitor as mod

    def broken(*args, **kwargs):
        raise RuntimeError("no /proc here")

    monkeypatch.setattr(mod, "SystemMetricsMonitor", broken)
    why = SystemMetrics().start("run", "sqlite:////nowhere.db")
    assert why == "no system metrics (RuntimeError: no /proc here)"


def test_a_run_shorter_than_one_sampling_interval_still_gets_one_point(tmp_path, monkeypatch):
    """MLflow's sampler publishes only after a full interval; a short run (or a sampler thread
    that started late on a busy machine) would end with no system metrics at all."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("sys")).info.run_id
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "3600")  # never within this test
    metrics = SystemMetrics()
    assert metrics.start(run_id, uri) is None
    metrics.stop(wait_s=30)
    assert "system/cpu_utilization_percentage" in client.get_run(run_id).data.metrics

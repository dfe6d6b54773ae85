"""Issue 20, tracking off the training thread: the worker retries a failing store with back-off
while the queue buffers, drops what the store refuses for good, ends within its deadline and says
what it could not log; MLflow's per-call tracebacks stay off stderr."""

import logging
import threading
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from ganzoo.tracking import background


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(background, "BACKOFF_S", (0.05, 0.1, 0.2))


class Store:
    """Fails (like a locked SQLite file) until `available` is set; records what it logged."""

    def __init__(self):
        self.available = threading.Event()
        self.logged, self.tries = [], 0

    def log(self, value):
        self.tries += 1
        if not self.available.is_set():
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        self.logged.append(value)


def test_a_failing_store_never_blocks_submit_and_gets_everything_in_order_when_it_returns():
    store, lines = Store(), []
    worker = background.Worker("sqlite:///x.db", warn=lines.append)
    t0 = time.perf_counter()
    for i in range(200):
        worker.submit(store.log, i, kind="metric points")
    assert time.perf_counter() - t0 < 0.5  # the training thread only enqueues
    time.sleep(0.4)
    assert store.tries >= 3 and store.logged == []  # retried with back-off, the rest buffered
    store.available.set()
    outcome = worker.close(timeout=10)
    assert not outcome and store.logged == list(range(200))
    assert len(lines) == 2 and "database is locked" in lines[0] and "retrying in the background" in lines[0]
    assert "answers again" in lines[1]


def test_close_gives_up_at_its_deadline_and_counts_what_was_lost():
    store, lines = Store(), []
    worker = background.Worker("http://tracker", warn=lines.append)
    for i in range(5):
        worker.submit(store.log, i, kind="metric points")
    worker.submit(store.log, "sheet", kind="sample sheets")
    worker.submit(store.log, "end", kind="run end (FINISHED)", essential=True)
    t0 = time.perf_counter()
    outcome = worker.close(timeout=0.5)
    assert time.perf_counter() - t0 < 1.5
    assert dict(outcome.lost) == {"metric points": 5, "sample sheets": 1, "run end (FINISHED)": 1}
    assert "database is locked" in outcome.reason
    worker.submit(store.log, 9, kind="metric points")  # after close: counted, never run
    assert outcome.lost["metric points"] == 6


def test_refused_actions_are_dropped_once_and_the_rest_logged():
    logged, lines = [], []

    def refuse(_):
        raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)

    worker = background.Worker("sqlite:///x.db", warn=lines.append)
    worker.submit(refuse, 0, kind="metric points")
    worker.submit(refuse, 1, kind="metric points")
    worker.submit(logged.append, 2, kind="metric points")
    outcome = worker.close(timeout=5)
    assert logged == [2] and outcome.lost["metric points"] == 2 and len(lines) == 1 and "dropped" in lines[0]


def test_a_hanging_call_does_not_hold_up_close_beyond_its_deadline():
    release = threading.Event()
    worker = background.Worker("http://tracker", warn=lambda line: None)
    worker.submit(lambda: release.wait(30), kind="run setup", essential=True)
    worker.submit(lambda: None, kind="metric points")
    t0 = time.perf_counter()
    outcome = worker.close(timeout=0.3)
    release.set()
    assert time.perf_counter() - t0 < 1.0 and dict(outcome.lost) == {"run setup": 1, "metric points": 1}


def test_memory_stays_bounded_while_the_store_is_away():
    store = Store()
    worker = background.Worker("sqlite:///x.db", warn=lambda line: None, max_pending=10)
    for i in range(50):
        worker.submit(store.log, i, kind="metric points")
    worker.submit(store.log, "end", kind="run end (FINISHED)", essential=True)  # never dropped for space
    assert worker.pending() <= 12
    store.available.set()
    outcome = worker.close(timeout=5)
    assert "end" in store.logged and outcome.lost["metric points"] == 50 - len(store.logged) + 1


def test_mlflow_tracebacks_from_the_worker_are_kept_off_stderr():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    noisy = logging.getLogger("mlflow.store.db.utils")
    handler = Keep()
    noisy.addHandler(handler)
    try:
        worker = background.Worker("sqlite:///x.db", warn=lambda line: None)
        worker.submit(lambda: noisy.error("SQLAlchemy database error. 60 lines follow"), kind="metric points")
        worker.close(timeout=5)
        noisy.error("from another thread")  # the filter is only for the worker thread, and only while it runs
    finally:
        noisy.removeHandler(handler)
    assert records == ["from another thread"]

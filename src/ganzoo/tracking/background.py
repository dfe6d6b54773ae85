"""Tracking off the training thread: one worker thread runs MLflow actions in order, so a slow,
locked or vanished store never stalls training. The training thread only enqueues.

A failing action is retried with back-off (1, 2, 4 ... 30 s) and the actions behind it wait in
the queue (the buffer) until it succeeds; one line says so the first time, another when the store
answers again. An action the store refuses for good (a bad value, a deleted run) is dropped and
counted. `close(timeout)` waits up to `timeout` seconds for the queue to drain (retrying at once
and then with back-off) and returns what could not be logged, for the caller to record locally.

MLflow's own loggers print a full traceback for every failed SQLite call; records from the
worker thread are kept off stderr (ganzoo's one line replaces them).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # then 30 s between tries
MAX_PENDING = 20_000  # actions; beyond it new metrics/images are dropped (counted), not buffered
# MLflow error codes that retrying cannot fix.
PERMANENT_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                   "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST"}
# Loggers that print tracebacks or retry chatter for each failed call.
NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.rest_utils", "mlflow.tracking._tracking_service.client",
                 "urllib3.connectionpool", "alembic")


@dataclass
class Action:
    fn: Callable[..., Any]
    args: tuple
    kind: str  # what is lost if it never runs: "metric points", "sample sheets", "run end" ...
    count: int = 1  # how many of `kind` it carries (a batch of metrics at one step: 1 point)
    essential: bool = False  # never dropped for space (run creation, the run's end)


@dataclass
class Outcome:
    """What close() could not log: counts per kind, and why."""

    lost: Counter = field(default_factory=Counter)
    reason: str | None = None

    def __bool__(self) -> bool:
        return bool(self.lost)

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.lost.items())


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying `exc` cannot help: the store refused the action itself, or ganzoo passed it
    something wrong. Connection errors, timeouts, locks and 5xx answers are worth retrying."""
    code = getattr(exc, "error_code", None)
    if code is not None:
        return code in PERMANENT_CODES
    return isinstance(exc, (TypeError, ValueError, KeyError, AttributeError, AssertionError))


def first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit] if lines else ''}"


class _FromThread(logging.Filter):
    def __init__(self, ident: int | None):
        super().__init__()
        self.ident = ident

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.ident


class Worker:
    """The background logger: submit() from the training thread, close() at the end."""

    def __init__(self, where: str, warn: Callable[[str], None] | None = None, max_pending: int = MAX_PENDING):
        self.where = where  # the store, for messages
        self.warn = warn or (lambda line: print(line, file=sys.stderr))
        self.max_pending = max_pending
        self.queue: queue.Queue[Action | None] = queue.Queue()
        self.outcome = Outcome()
        self.abandoned = False  # set by close() past its deadline: run nothing more
        self.failing: str | None = None  # the error the current action keeps hitting
        self._wake = threading.Event()  # cuts a back-off wait short when close() starts
        self._told_failing = self._told_permanent = False
        self._lock = threading.Lock()
        self._current: Action | None = None  # the action the worker is running
        self._thread = threading.Thread(target=self._run, name="ganzoo-mlflow", daemon=True)
        self._thread.start()
        self._filter = _FromThread(self._thread.ident)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    # ------------------------------------------------------------------ training thread
    def submit(self, fn: Callable[..., Any], *args, kind: str, count: int = 1, essential: bool = False) -> None:
        if self.abandoned:
            self._lose(kind, count)
            return
        if not essential and self.queue.qsize() >= self.max_pending:
            self._lose(kind, count)  # a store down for hours: keep memory bounded
            return
        self.queue.put(Action(fn, args, kind, count, essential))

    def pending(self) -> int:
        return self.queue.qsize()

    def close(self, timeout: float) -> Outcome:
        """Wait up to `timeout` s for every queued action; then stop, counting what is left as lost."""
        self.queue.put(None)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abandoned = True
            self.outcome.reason = self.outcome.reason or self.failing or f"no answer within {timeout:.0f} s"
            while True:
                try:
                    action = self.queue.get_nowait()
                except queue.Empty:
                    break
                if action is not None:
                    self._lose(action.kind, action.count)
            if self._current is not None:
                self._lose(self._current.kind, self._current.count)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        return self.outcome

    # ------------------------------------------------------------------ worker thread
    def _lose(self, kind: str, count: int) -> None:
        with self._lock:
            self.outcome.lost[kind] += count

    def _run(self) -> None:
        while True:
            action = self.queue.get()
            if action is None or self.abandoned:
                return
            self._current = action
            self._attempt(action)
            self._current = None

    def _attempt(self, action: Action) -> None:
        tries = 0
        while not self.abandoned:
            try:
                action.fn(*action.args)
            except Exception as exc:  # noqa: BLE001 -- tracking must never stop training
                if is_permanent(exc):
                    self._lose(action.kind, action.count)
                    self.outcome.reason = first_line(exc)
                    if not self._told_permanent:
                        self._told_permanent = True
                        self.warn(f"[ganzoo] MLflow: {first_line(exc)} at {self.where}; dropped "
                                  f"({action.kind}), logging the rest")
                    return
                self.failing = first_line(exc)
                if not self._told_failing:
                    self._told_failing = True
                    self.warn(f"[ganzoo] MLflow: {self.failing} at {self.where}; retrying in the background "
                              f"with back-off (training continues; checkpoints and metrics are written locally)")
                if self._wake.wait(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]):
                    self._wake.clear()  # close() started: one try at once, then back-off again
                tries += 1
                continue
            if self.failing is not None:
                self.warn(f"[ganzoo] MLflow: {self.where} answers again after {tries} retries; "
                          f"logging the {self.pending()} buffered action(s)")
                self.failing, self._told_failing = None, False
            return
        # abandoned: close() counts this action as lost

"""Issue 20, faults from outside the process: a tracking server that stops answering mid-run (on
127.0.0.1), a SQLite store locked longer than MLflow's busy timeout, and a file-size limit that
makes the kernel refuse the checkpoint write (a full disk, as far as the writer can tell)."""

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ganzoo.config import load_config
from ganzoo.tracking import open_tracker
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.training.hooks import Hooks
from ganzoo.training.loop import train_loop
from tests.helpers import make_prepared
from tests.integration.fake_mlflow import FakeMlflow

TINY = ["train.batch_size=4", "train.log_every=1", "tracking.log_every=1", "tracking.image_every=20",
        "train.checkpoint_every=10", "train.progress=false", "model.dcgan.ngf=8", "model.dcgan.ndf=8",
        "model.dcgan.z_dim=8"]
STEPS = 40


class Probe(Hooks):
    """Stops the server once the run is really under way, then times the loop's log calls."""

    def __init__(self, fake: FakeMlflow, at: int = 10):
        self.fake, self.at, self.times = fake, at, []

    def on_log(self, step, losses, images_per_s):
        if step == self.at:  # wait (outside the timing) until the run exists and holds metrics
            deadline = time.monotonic() + 60
            while not any(self.fake.steps(r, "loss_d") for r in list(self.fake.runs)):
                assert time.monotonic() < deadline, "the run never reached the fake server"
                time.sleep(0.05)
            self.fake.stop_answering()
        if step > self.at:
            self.times.append(time.perf_counter())

    def max_gap(self):
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = FakeMlflow(tmp_path / "server_artifacts")
    yield server
    server.shutdown()


def tracked_training(cfg, fake):
    """What stages.train does (tracker hooks, then close), with the probe beside the tracker; the
    caller closes, to time it."""
    tracker, probe = open_tracker(cfg), Probe(fake)
    try:
        train_loop(cfg, make_prepared(n=16, size=16), hooks=[tracker.training_hooks(), probe])
    except BaseException:
        tracker.close()
        raise
    return tracker, probe


@pytest.mark.slow
def test_server_that_stops_answering_does_not_stall_training_and_gets_everything_back(in_tmp, fake, capsys):
    cfg = load_config(None, [f"train.steps={STEPS}", *TINY, f"tracking.uri={fake.uri}", "tracking.flush_timeout=30"])
    tracker, probe = tracked_training(cfg, fake)
    assert fake.held > 0  # requests reached it and were never answered
    assert probe.max_gap() < 1.0, probe.max_gap()  # MLflow's own retries would sit ~4 minutes in one call
    threading.Timer(2.0, fake.come_back).start()
    t0 = time.perf_counter()
    tracker.close()
    assert time.perf_counter() - t0 < 30
    (run_id,) = fake.runs
    assert fake.runs[run_id]["info"]["status"] == "FINISHED"
    assert fake.steps(run_id, "loss_d") == list(range(1, STEPS + 1))  # buffered, then flushed: none lost
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[ganzoo] MLflow:")]
    assert len(lines) == 2 and "retrying in the background" in lines[0] and "answers again" in lines[1], lines
    assert not fake.unknown


@pytest.mark.slow
def test_server_that_never_comes_back_is_recorded_locally_and_settled_later(in_tmp, fake, capsys):
    cfg = load_config(None, [f"train.steps={STEPS}", *TINY, f"tracking.uri={fake.uri}", "tracking.flush_timeout=2"])
    tracker, probe = tracked_training(cfg, fake)
    t0 = time.perf_counter()
    tracker.close()
    assert time.perf_counter() - t0 < 4  # the deadline, plus at most one 1 s request in flight
    side = json.loads((in_tmp / "checkpoints" / "dcgan" / "mlflow_run.json").read_text())
    (run_id,) = fake.runs
    assert side["run_id"] == run_id and side["unlogged"]["run_end"] == "FINISHED"
    assert "metric points" in side["unlogged"]["what"] and side["step"] == STEPS
    err = capsys.readouterr().err
    assert f"not logged to {fake.uri}" in err and "mlflow_run.json" in err
    assert fake.runs[run_id]["info"]["status"] == "RUNNING"

    fake.come_back()  # `ganzoo evaluate` once the server is back: it ends the run, then logs into it
    later = open_tracker(cfg)
    later.log_evaluation(in_tmp / "checkpoints" / "dcgan" / "last.pt", {"fid_classifier": 12.5, "step": STEPS},
                         in_tmp / "eval")
    later.close()
    assert fake.runs[run_id]["info"]["status"] == "FINISHED" and len(fake.runs) == 1
    assert fake.steps(run_id, "eval/fid_classifier") == [STEPS]


class Interrupt(Hooks):
    def __init__(self, exc):
        self.exc = exc

    def on_log(self, step, losses, images_per_s):
        if step == 5:
            raise self.exc


@pytest.mark.slow
@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "KILLED"), (RuntimeError("boom"), "FAILED")])
def test_a_run_that_does_not_reach_its_end_is_still_closed(in_tmp, fake, exc, status):
    cfg = load_config(None, [f"train.steps={STEPS}", *TINY, f"tracking.uri={fake.uri}"])
    tracker = open_tracker(cfg)
    with pytest.raises(type(exc)):
        try:
            train_loop(cfg, make_prepared(n=16, size=16), hooks=[tracker.training_hooks(), Interrupt(exc)])
        finally:
            tracker.close()  # as stages.train does
    (run_id,) = fake.runs
    assert fake.runs[run_id]["info"]["status"] == status and fake.steps(run_id, "loss_d") == [1, 2, 3, 4, 5]


class LockMidRun(Hooks):
    """At step 10, once the run is under way (the store set up and the tracker caught up: a lock
    during MLflow's first schema migration is another story), another connection takes an exclusive
    lock on the SQLite store for `hold_s` seconds; the loop's log calls after that are timed."""

    def __init__(self, tracker, db: Path, hold_s: float):
        self.tracker, self.db, self.hold_s, self.times, self.locked = tracker, db, hold_s, [], threading.Event()

    def on_log(self, step, losses, images_per_s):
        if step == 10:
            deadline = time.monotonic() + 120
            while self.tracker.run_id is None or self.tracker.worker.pending():
                assert time.monotonic() < deadline, "the tracker never caught up"
                time.sleep(0.05)
            threading.Thread(target=self.hold, daemon=True).start()
            assert self.locked.wait(30)
        elif step > 10:
            self.times.append(time.perf_counter())

    def hold(self):
        db = sqlite3.connect(self.db, timeout=60)
        db.execute("BEGIN EXCLUSIVE")
        self.locked.set()
        time.sleep(self.hold_s)
        db.rollback()
        db.close()


@pytest.mark.slow
def test_sqlite_store_locked_longer_than_mlflows_busy_timeout_loses_nothing(in_tmp, monkeypatch, capfd):
    """MLflow waits 20 s on a locked SQLite file and then fails the call with a 60-line traceback;
    a lock longer than that mid-run used to switch tracking off for good (76 of 200 points, the run
    RUNNING forever). capfd: MLflow's log handler writes to the process's stderr, not pytest's."""
    steps = 40
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None, [f"train.steps={steps}", *TINY, "tracking.flush_timeout=60"])
    tracker = open_tracker(cfg)
    probe = LockMidRun(tracker, in_tmp / "mlflow.db", hold_s=21)
    try:
        train_loop(cfg, make_prepared(n=16, size=16), hooks=[tracker.training_hooks(), probe])
    finally:
        tracker.close()
    assert max(b - a for a, b in zip(probe.times, probe.times[1:], strict=False)) < 1.0  # never waited on the lock
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("[ganzoo] MLflow:")]
    assert len(lines) == 2 and "database is locked" in lines[0] and "answers again" in lines[1], lines

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ganzoo").experiment_id])
    assert run.info.status == "FINISHED"
    for key in ("loss_d", "loss_g", "images_per_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, steps + 1))
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/last.pt"]


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_kernel_refusing_the_checkpoint_write_is_one_line_and_keeps_the_old_one(in_tmp):
    from ganzoo.cli import main

    sets = [a for t in ["data.image_size=16", "data.limit=32", "tracking.enabled=false", *TINY] for a in ("--set", t)]
    assert main(["prepare", *sets]) == 0
    assert main(["train", *sets, "--set", "train.steps=2"]) == 0
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    before = last.read_bytes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONDONTWRITEBYTECODE": "1"}
    failed = subprocess.run([sys.executable, "-m", "ganzoo", "train", "--resume", *sets, "--set", "train.steps=4"],
                            cwd=in_tmp, env=env, text=True, capture_output=True, timeout=300,
                            preexec_fn=_limit_file_size(len(before) // 2))
    err = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and len(err) == 1, failed.stderr[-3000:]
    assert "File too large" in err[0] and "last.pt" in err[0] and "ulimit" in err[0]
    assert last.read_bytes() == before and read_checkpoint(last)["step"] == 2
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_dvc_does_not_see_the_temp_files_a_kill_leaves(tmp_path):
    """Until the next run removes them, a killed writer's temps must not make `dvc status` report
    the train stage's output modified: the project's .dvcignore hides them."""
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / ".dvcignore").write_text((repo / ".dvcignore").read_text())
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
    temp = "checkpoints/dcgan/.last.pt.somehost-4242.k3j2h1.tmp"
    ignored = subprocess.run([*dvc, "check-ignore", temp, "checkpoints/dcgan/last.pt"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert ignored.stdout.split() == [temp]

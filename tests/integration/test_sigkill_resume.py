"""Crash safety: a `ganzoo train` process killed with SIGKILL after a checkpoint resumes to the
same result as an uninterrupted run. Moved here from tests/unit/test_training.py (it runs
`python -m ganzoo` subprocesses)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganzoo.training.checkpoint import read_checkpoint


def _ganzoo(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "ganzoo", *args], cwd=cwd, **kw)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    """A run killed with SIGKILL after a checkpoint and resumed ends at the same step with the
    same weights as an uninterrupted run (CPU, same seed)."""
    common = ["--set", "data.image_size=16", "--set", "data.limit=256", "--set", "train.batch_size=16",
              "--set", "train.checkpoint_every=10", "--set", "train.log_every=5", "--set", "train.threads=1",
              "--set", "tracking.enabled=false", "--set", "train.progress=false",
              "--set", "model.dcgan.ngf=16", "--set", "model.dcgan.ndf=16", "--set", "train.steps=200",
              # the training monitor stays on (kill-and-resume must stay bit-exact with it), quick classifier
              "--set", "eval.classifier_steps=20", "--set", "monitor.eval_every=20", "--set", "monitor.n_probe=64"]
    runs = {}
    for name in ("straight", "killed"):
        d = tmp_path / name
        d.mkdir()
        assert _ganzoo(["prepare", *common], d).wait(60) == 0
        runs[name] = d
    assert _ganzoo(["train", *common], runs["straight"]).wait(300) == 0

    proc = _ganzoo(["train", *common], runs["killed"])
    last = runs["killed"] / "checkpoints" / "dcgan" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(last)["step"]
    assert 10 <= killed_at < 200, killed_at
    assert _ganzoo(["train", "--resume", *common], runs["killed"]).wait(300) == 0

    a = read_checkpoint(runs["straight"] / "checkpoints" / "dcgan" / "last.pt")
    b = read_checkpoint(last)
    assert a["step"] == b["step"] == 200
    for net in a["state"]["nets"]:
        for k, v in a["state"]["nets"][net].items():
            assert torch.equal(v, b["state"]["nets"][net][k]), (net, k)
    assert (runs["straight"] / "metrics/dcgan/losses.csv").read_text() == \
        (runs["killed"] / "metrics/dcgan/losses.csv").read_text()

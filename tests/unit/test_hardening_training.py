"""Issue 20, training: a checkpoint is never silently replaced, a diverged run never overwrites a
finite checkpoint, output folders are checked before the compute, a full disk or an unwritable
folder is one line, temp files of killed writers are cleaned, and checkpoint failures say what
happened (unsafe pickle, weights that do not fit their config)."""

import errno
import io
import os
import pickle
import socket

import pytest
import torch

from ganzoo import files
from ganzoo.cli import main
from ganzoo.config import load_config
from ganzoo.errors import ConfigError
from ganzoo.training import loop
from ganzoo.training.checkpoint import load_variant, read_checkpoint
from ganzoo.training.loop import train_loop
from tests.helpers import make_prepared

TINY = ["train.batch_size=4", "train.log_every=1", "train.checkpoint_every=100", "train.progress=false",
        "tracking.enabled=false", "model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8"]


DATA = ["data.image_size=16", "data.limit=32"]
SETS = [a for t in [*DATA, *TINY] for a in ("--set", t)]  # the same tiny run through the CLI


def cfg(steps, *extra):
    return load_config(None, [f"train.steps={steps}", *TINY, *extra])


@pytest.fixture
def prep():
    return make_prepared(n=16, size=16)


def step_of(path):
    return read_checkpoint(path)["step"]


def finite(path):
    state = read_checkpoint(path)["state"]["nets"]
    return all(torch.isfinite(t).all() for net in state.values() for t in net.values() if t.is_floating_point())


# --------------------------------------------------------------------------- defect 0: never silently replaced

def test_shorter_auto_run_keeps_the_longer_checkpoint(in_tmp, prep, capsys):
    train_loop(cfg(6), prep)
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    before = last.read_bytes()
    train_loop(cfg(3), prep, resume="auto")  # what `dvc repro` after `--set train.steps=3` runs
    out = capsys.readouterr().out
    kept = last.with_name("step-6.pt")
    assert "past train.steps=3" in out and "kept the previous checkpoint as checkpoints/dcgan/step-6.pt" in out
    assert kept.read_bytes() == before and step_of(last) == 3


@pytest.mark.parametrize("resume, extra, why", [("no", [], "--resume no"),
                                                ("auto", ["seed=9"], "different seed")])
def test_fresh_start_over_a_checkpoint_keeps_it(in_tmp, prep, capsys, resume, extra, why):
    train_loop(cfg(2), prep)
    train_loop(cfg(2, *extra), prep, resume=resume)
    out = capsys.readouterr().out
    ckpts = in_tmp / "checkpoints" / "dcgan"
    assert why in out and step_of(ckpts / "step-2.pt") == 2
    train_loop(cfg(2, *extra), prep, resume="no")  # the same name again: a numbered one, nothing overwritten
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["last.pt", "step-2.2.pt", "step-2.pt"]


def test_auto_still_continues_a_compatible_shorter_checkpoint(in_tmp, prep):
    train_loop(cfg(2), prep)
    assert train_loop(cfg(4), prep, resume="auto").resumed_from == 2
    assert sorted(p.name for p in (in_tmp / "checkpoints" / "dcgan").glob("*.pt")) == ["last.pt"]


def test_resume_yes_past_steps_names_the_flags(in_tmp, prep):
    train_loop(cfg(4), prep)
    with pytest.raises(ConfigError, match=r"raise train.steps, or train with --resume no"):
        train_loop(cfg(2), prep, resume="yes")


def test_unreadable_checkpoint_replaced_by_resume_no_is_kept_too(in_tmp, prep):
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"not a checkpoint")
    train_loop(cfg(2), prep, resume="no")
    assert (last.parent / "previous.pt").read_bytes() == b"not a checkpoint" and step_of(last) == 2


# --------------------------------------------------------------------------- defect 5: non-finite losses

def poison(monkeypatch, at_call: int, weights_only: bool = False):
    """From the at_call-th train step on, the generator's weights turn NaN after the step (its
    losses stay finite on that step when weights_only, NaN from the next one)."""
    real = loop.make_train_step

    def make(variant, *args, **kw):
        step = real(variant, *args, **kw)
        calls = {"n": 0}

        def poisoned(batch):
            calls["n"] += 1
            losses = step(batch)
            if calls["n"] >= at_call:
                with torch.no_grad():
                    next(variant.nets["g"].parameters()).fill_(float("nan"))
                if not weights_only:
                    losses = {k: v * float("nan") for k, v in losses.items()}
            return losses
        return poisoned

    monkeypatch.setattr(loop, "make_train_step", make)


def test_nan_losses_stop_the_run_and_keep_the_finite_checkpoint(in_tmp, prep, monkeypatch):
    train_loop(cfg(4), prep)
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    before = last.read_bytes()
    poison(monkeypatch, at_call=1)
    with pytest.raises(ConfigError, match=r"training diverged: loss_d, loss_g .* by step 5; stopped, "
                                          r"checkpoints/dcgan/last.pt keeps step 4"):
        train_loop(cfg(10, "train.checkpoint_every=1"), prep, resume="yes")
    assert last.read_bytes() == before and finite(last)
    assert "nan" not in (in_tmp / "metrics" / "dcgan" / "losses.csv").read_text().lower()


def test_nan_weights_between_log_steps_are_caught_before_the_checkpoint(in_tmp, prep, monkeypatch):
    poison(monkeypatch, at_call=3, weights_only=True)
    with pytest.raises(ConfigError, match=r"the weights of net 'g' became NaN or infinite by step 3.*no checkpoint"):
        train_loop(cfg(3, "train.log_every=100"), prep)
    assert not (in_tmp / "checkpoints" / "dcgan" / "last.pt").exists()


def test_diverged_fresh_run_leaves_the_old_checkpoint_in_place(in_tmp, prep, monkeypatch):
    train_loop(cfg(2), prep)
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    before = last.read_bytes()
    poison(monkeypatch, at_call=1)
    with pytest.raises(ConfigError, match=r"last.pt \(not this run's\) was left as it was"):
        train_loop(cfg(4, "seed=3"), prep, resume="auto")
    assert last.read_bytes() == before and not list(last.parent.glob("step-*.pt"))


def test_cli_reports_divergence_in_one_line(in_tmp, monkeypatch, capsys):
    assert main(["prepare", *SETS]) == 0
    poison(monkeypatch, at_call=1)
    assert main(["train", "--set", "train.steps=3", *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "train.lr" in err[0]


# --------------------------------------------------------------------------- environment failures

def refuse_compute(monkeypatch):
    monkeypatch.setattr(loop, "make_train_step", lambda *a, **k: pytest.fail("trained before checking the output"))


def test_out_dir_under_a_file_fails_before_any_compute(in_tmp, prep, monkeypatch, capsys):
    (in_tmp / "taken").write_text("a file, not a folder")
    refuse_compute(monkeypatch)
    with pytest.raises(files.StorageError, match=r"train.out_dir: cannot write to taken/dcgan"):
        train_loop(cfg(2, "train.out_dir=taken"), prep)


def make_read_only(folder):
    """A folder nobody may write to, root included (chattr +i), or skip where that cannot be made."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    import subprocess

    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable: no read-only folder to test with")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_out_dir_is_one_line_before_training(in_tmp, monkeypatch, capsys):
    assert main(["prepare", *SETS]) == 0
    undo = make_read_only(in_tmp / "ro")
    try:
        refuse_compute(monkeypatch)
        # nor is the monitor's classifier trained first (minutes, for a run that cannot be saved)
        monkeypatch.setattr("ganzoo.evaluation.monitor.build_monitor",
                            lambda *a, **k: pytest.fail("built the monitor before checking the output"))
        code = main(["train", "--set", "train.steps=2", "--set", "train.out_dir=ro", *SETS])
    finally:
        undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "train.out_dir: cannot write to ro/dcgan" in err[0] and "writable" in err[0]


class FullDisk(io.RawIOBase):
    """A file that fills up after `room` bytes, like a full disk (ENOSPC on write)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def writable(self):
        return True

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def fileno(self):
        return self.f.fileno()

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()
        super().close()


def test_full_disk_mid_checkpoint_is_one_line_and_keeps_the_old_checkpoint(in_tmp, monkeypatch, capsys):
    assert main(["prepare", *SETS]) == 0
    assert main(["train", "--set", "train.steps=2", *SETS]) == 0
    last = in_tmp / "checkpoints" / "dcgan" / "last.pt"
    before = last.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), room=2000))
    capsys.readouterr()
    assert main(["train", "--resume", "--set", "train.steps=4", *SETS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "last.pt" in err[0] and "free some space" in err[0]
    assert last.read_bytes() == before
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- stale temp files

def dead_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    host = socket.gethostname().replace(".", "-")[:40]
    dead = tmp_path / f".last.pt.{host}-{dead_pid()}.abc123.tmp"
    alive = tmp_path / f".last.pt.{host}-1.abc123.tmp"  # pid 1 always runs
    other_host = tmp_path / ".last.pt.elsewhere-99.abc123.tmp"
    old_style = tmp_path / ".last.pt.k2j4h5.tmp"  # written before temps carried a pid
    mine = tmp_path / "notes.tmp"
    for p in (dead, alive, other_host, old_style, mine):
        p.write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"ckpt")
    assert files.remove_stale_temps(tmp_path) == [dead]
    hour_ago = os.path.getmtime(old_style) - files.STALE_AFTER_S - 60
    for p in (other_host, old_style, mine):
        os.utime(p, (hour_ago, hour_ago))
    assert sorted(files.remove_stale_temps(tmp_path)) == sorted([other_host, old_style])
    assert alive.exists() and mine.exists()


def test_next_run_removes_the_temp_a_killed_checkpoint_write_left(in_tmp, prep):
    """A writer SIGKILLed mid-write (a real kill, in a child process) leaves its temp file; the
    next training start removes it before any compute."""
    import subprocess
    import sys

    ckdir = in_tmp / "checkpoints" / "dcgan"
    script = ("import os, signal, sys; from pathlib import Path; from ganzoo.files import atomic_write_bytes\n"
              "def write(f):\n    f.write(b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
              "atomic_write_bytes(Path(sys.argv[1]), write)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", script, str(ckdir / "last.pt")], env=env).returncode == -9
    left = [p for p in ckdir.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].stat().st_size == 100000
    train_loop(cfg(1), prep)
    assert sorted(p.name for p in ckdir.iterdir()) == ["last.pt"]


# --------------------------------------------------------------------------- checkpoint failures

class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_code_is_refused_as_unsafe(in_tmp):
    torch.save({"config": {}, "state": Payload()}, in_tmp / "evil.pt")
    (in_tmp / "evil2.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    code = r"refused as unsafe: it carries code to run on load \(GLOBAL \w+\.system\)"
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(ConfigError, match=code):
            read_checkpoint(in_tmp / name)
    (in_tmp / "evil4.pt").write_bytes(pickle.dumps(Payload(), protocol=4))  # fails on an opcode first
    with pytest.raises(ConfigError, match=r"refused as unsafe: it holds more than tensors and plain data"):
        read_checkpoint(in_tmp / "evil4.pt")


def test_truncated_checkpoint_is_called_corrupt(in_tmp, prep):
    result = train_loop(cfg(1), prep)
    (in_tmp / "cut.pt").write_bytes(result.checkpoint.read_bytes()[:5000])
    with pytest.raises(ConfigError, match="unreadable .* corrupt"):
        read_checkpoint(in_tmp / "cut.pt")


def test_checkpoint_whose_config_disagrees_with_its_weights(in_tmp, prep, capsys):
    result = train_loop(cfg(1), prep)
    ckpt = torch.load(result.checkpoint, weights_only=True)
    ckpt["config"]["model"]["dcgan"]["ngf"] = 16  # the weights were trained with 8
    torch.save(ckpt, in_tmp / "edited.pt")
    with pytest.raises(ConfigError, match=r"weights do not fit its own config \(.*size mismatch"):
        load_variant(in_tmp / "edited.pt")
    assert main(["sample", "edited.pt", "--n", "2", "--out", "x.npz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edited.pt" in err[0] and "weights do not fit" in err[0]
    # Resuming from such a file is the same one line, not a traceback.
    result.checkpoint.write_bytes((in_tmp / "edited.pt").read_bytes())
    with pytest.raises(ConfigError, match="weights do not fit"):
        train_loop(cfg(2, "model.dcgan.ngf=16"), prep, resume="yes")

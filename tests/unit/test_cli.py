"""The command line as a user meets it: --version, help with defaults and examples, --json output
that scripts can parse, elapsed time, and progress as plain lines when stderr is not a terminal."""

from __future__ import annotations

import io
import json

import pytest

from ganzoo import __version__, cli, stages
from ganzoo.training.hooks import Progress
from tests.helpers import write_params


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ganzoo {__version__} (python ") and "torch " in out


@pytest.mark.parametrize("command", ["prepare", "train", "classifier", "evaluate", "register", "sample", "translate"])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and f"ganzoo {command}" in text.split("examples:")[1]
    assert "(default: " in text  # defaults are shown


def test_train_evaluate_sample_print_json_and_train_says_how_long(in_tmp, capsys):
    write_params(in_tmp)
    assert cli.main(["prepare"]) == 0
    capsys.readouterr()

    assert cli.main(["train"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("trained dcgan to step 4 (from scratch) in ") and "loss_g=" in line

    assert cli.main(["train", "--set", "train.steps=6", "--resume", "auto", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    assert trained["steps"] == 6 and trained["resumed_from"] == 4 and trained["elapsed_s"] > 0
    assert set(trained["losses"]) == {"loss_d", "loss_g"}

    assert cli.main(["evaluate", "--json", "--scores", "eval/scores.json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == json.loads((in_tmp / "eval/dcgan/metrics.json").read_text())
    assert json.loads((in_tmp / "eval/scores.json").read_text()) == stages.scores(metrics)

    assert cli.main(["evaluate"]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("evaluated dcgan at step 6: fid_classifier ") and "(lower is better)" in summary

    assert cli.main(["sample", "checkpoints/dcgan/last.pt", "--n", "4", "--out", "s.npz", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"variant": "dcgan", "n": 4, "out": "s.npz"}


def test_register_prints_its_decision_as_json(in_tmp, capsys, monkeypatch):
    decision = {"version": 3, "alias": "challenger", "message": "registered ganzoo-dcgan-digits v3 as challenger"}
    monkeypatch.setattr(stages, "register", lambda cfg, checkpoint: decision)
    assert cli.main(["register", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == decision
    assert cli.main(["register"]) == 0
    assert capsys.readouterr().out.strip() == decision["message"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_without_a_terminal_prints_plain_periodic_lines():
    stream, clock = io.StringIO(), Clock()  # StringIO.isatty() is False, as a pipe or a log file
    progress = Progress(total=100, start=0, enabled=True, stream=stream, every_s=30, clock=clock)
    for step in range(10, 101, 10):
        clock.now += 10
        progress.on_log(step, {"loss_d": 0.5, "loss_g": 1.25}, 640.0)
    progress.on_end(100, None)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the first logged step, then one line per 30 s, and the last step, marked done
    assert [line.split()[2] for line in lines] == ["10/100", "40/100", "70/100", "100/100"]
    assert "loss_d=0.5000  loss_g=1.2500  640 img/s" in lines[0] and "left]" in lines[0]
    assert lines[-1].endswith("[done in 1m40s]")


def test_progress_on_a_terminal_is_a_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(total=100, start=0, enabled=True, stream=stream)
    progress.on_log(50, {"loss_d": 0.5}, 640.0)
    progress.on_end(100, None)
    assert "\r" in stream.getvalue() and "100/100" in stream.getvalue()


def test_progress_off_prints_nothing():
    stream = io.StringIO()
    progress = Progress(total=10, start=0, enabled=False, stream=stream)
    progress.on_log(10, {"loss_d": 0.5}, 1.0)
    progress.on_end(10, None)
    assert stream.getvalue() == ""

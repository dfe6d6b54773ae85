"""The training health monitor: alarms on a collapsing generator, best.pt, early stopping, and a
monitor that never changes what is trained (resume stays bit-exact, the probe is the same)."""

from __future__ import annotations

import pytest
import torch

from ganzoo.config import load_config
from ganzoo.evaluation.monitor import build_monitor
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.training.loop import train_loop
from ganzoo.variants import registry
from ganzoo.variants.gan import GAN
from tests.helpers import make_prepared


class Collapsed(GAN):
    """Test-only: G ignores z (one image for every noise vector), the extreme of mode collapse."""

    name = "collapsed"
    description = "test-only generator that ignores its noise"

    def decode(self, z, labels=None, codes=None, generator=None):
        return self.nets["g"](torch.zeros_like(z))


def cfg(name="gan", steps=6, extra=()):
    return load_config(None, [f"variant={name}", f"model.{name}.hidden=16", f"model.{name}.z_dim=8",
                              f"train.steps={steps}", "train.batch_size=8", "train.log_every=1",
                              "train.checkpoint_every=3", "train.progress=false", "tracking.enabled=false",
                              "eval.classifier_steps=20", "monitor.eval_every=2", "monitor.n_probe=64", *extra])


def run(c, prep, resume="no"):
    c = registry.resolve(c)
    monitor, _ = build_monitor(c, prep, torch.device("cpu"))
    return train_loop(c, prep, resume=resume, monitor=monitor)


@pytest.fixture
def prep():
    return make_prepared("images", n=64, size=8)


@pytest.fixture
def collapsed(monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, "collapsed", f"{__name__}:Collapsed")


def test_a_collapsed_generator_raises_the_alarm_within_one_interval(in_tmp, prep, collapsed, capsys):
    result = run(cfg("collapsed", steps=4), prep)
    out = capsys.readouterr().err
    assert "ALARM at step 2: collapse" in out and out.count("ALARM") == 1  # said once
    assert result.history[1]["step"] == 2 and result.history[1]["probe_coverage"] <= 0.1
    assert result.history[1]["probe_entropy"] == pytest.approx(0.0, abs=1e-9)  # one class: no entropy
    stopped = run(cfg("collapsed", steps=10, extra=["monitor.stop_on_alarm=true", "train.out_dir=stop"]), prep)
    assert stopped.steps == 2 and "monitor.stop_on_alarm" in stopped.stop_reason
    assert read_checkpoint(stopped.checkpoint)["step"] == 2  # the stop writes its checkpoint


def test_best_pt_holds_the_best_evaluation(in_tmp, prep):
    result = run(cfg(steps=8), prep)
    evals = [row for row in result.history if "probe_fid_classifier" in row]
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
    assert all(0 < r["probe_entropy"] <= 1 and 0 < r["probe_coverage"] <= 1 for r in evals)
    best = min(evals, key=lambda r: r["probe_fid_classifier"])
    assert result.best_step == best["step"] and read_checkpoint(result.best)["step"] == best["step"]
    assert (in_tmp / "metrics" / "gan" / "losses.csv").read_text().splitlines()[0].count("probe_") >= 3


def test_the_monitor_changes_nothing_that_is_trained(in_tmp, prep):
    on = read_checkpoint(run(cfg(), prep).checkpoint)
    off = read_checkpoint(train_loop(cfg(extra=["monitor.eval_every=0", "train.out_dir=ck_off"]), prep).checkpoint)
    for net, state in on["state"]["nets"].items():
        for k, v in state.items():
            assert torch.equal(v, off["state"]["nets"][net][k]), (net, k)


def test_resume_with_the_monitor_is_bit_exact_and_keeps_the_best_record(in_tmp, prep):
    straight = run(cfg(steps=6), prep)
    run(cfg(steps=3, extra=["train.out_dir=ck2", "train.metrics_dir=m2"]), prep)
    resumed = run(cfg(steps=6, extra=["train.out_dir=ck2", "train.metrics_dir=m2"]), prep, resume="yes")
    a, b = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    for net, state in a["state"]["nets"].items():
        for k, v in state.items():
            assert torch.equal(v, b["state"]["nets"][net][k]), (net, k)
    # The probe is the same samples: the evaluation at step 6 scores identically either way.
    assert a["history"][-1] == b["history"][-1]
    assert a["monitor"]["best"]["best_step"] == b["monitor"]["best"]["best_step"]


def test_patience_stops_a_run_that_stopped_improving(in_tmp, prep):
    result = run(cfg(steps=40, extra=["monitor.patience=1", "train.lr=1e-9"]), prep)  # it cannot improve
    assert result.steps < 40 and "stopped early" in result.stop_reason


def test_the_monitor_is_off_without_labels_and_says_why(prep):
    unlabelled = make_prepared("images", n=16, size=8)
    del unlabelled.tensors["y"]
    monitor, why = build_monitor(registry.resolve(cfg()), unlabelled, torch.device("cpu"))
    assert monitor is None and why.startswith("monitor off:") and "labels" in why


def test_the_monitor_numbers_carry_a_fingerprint_and_a_changed_monitor_restarts_the_best_record(in_tmp, prep,
                                                                                                 capsys):
    first = read_checkpoint(run(cfg(steps=4), prep).checkpoint)["monitor"]
    fp = first["fingerprint"]
    assert len(fp["hash"]) == 12 and "count=64 of 64" in fp["reference"] and fp["generated"].startswith("64")
    assert "probe_fid_classifier" in fp["metrics"].split()
    assert first["best"]["best_step"] is not None
    # Same settings: the record carries over. Another probe size: not comparable, so it restarts.
    run(cfg(steps=6), prep, resume="yes")
    assert "restarts" not in capsys.readouterr().err
    resumed = read_checkpoint(run(cfg(steps=8, extra=["monitor.n_probe=32"]), prep, resume="yes").checkpoint)
    assert "the best-so-far record" in capsys.readouterr().err
    assert resumed["monitor"]["fingerprint"]["hash"] != fp["hash"]
    assert resumed["monitor"]["best"]["best_step"] == 8  # the only evaluation made with the new probe

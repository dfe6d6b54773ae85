"""Champion gating without a store: noise-aware decisions, fingerprint refusal, the decision's
tags and Prefect artifact, and two concurrent registers racing for the alias (a fake client
that is slow to answer, as a busy tracking server is)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from mlflow.exceptions import MlflowException

from flows.pipeline import decision_markdown
from ganzoo.evaluation import fingerprint
from ganzoo.tracking import registry

PARTS = {"extractor": "classifier sha256=ab", "input": "uint8", "reference": "digits train count=1797",
         "generated": "2000", "seed": "1234", "estimator": "kid 100x1000"}
FP = fingerprint.make(["fid_classifier", "fid_classifier_ci_low", "fid_classifier_ci_high"], **PARTS)


def metrics(fid, low=None, high=None, fp=FP):
    m = {"fid_classifier": fid, "primary_metric": "fid_classifier", "fingerprint": {"classifier": fp}}
    if low is not None:
        m.update(fid_classifier_ci_low=low, fid_classifier_ci_high=high)
    return m


def champion(fid, low=None, high=None, fp=FP, version=1):
    tags = registry.version_tags(registry.standing_of_metrics(metrics(fid, low, high, fp), "ck/last.pt"))
    return registry.standing_of_version(SimpleNamespace(version=str(version), tags=tags))


def test_a_challenger_better_by_less_than_the_noise_keeps_the_champion():
    champ = champion(30.0, 28.0, 32.0)
    tie = registry.decide(champ, registry.standing_of_metrics(metrics(29.0, 27.1, 31.0)))
    assert tie.outcome == "challenger" and "within noise" in tie.reason and "overlap" in tie.reason
    win = registry.decide(champ, registry.standing_of_metrics(metrics(24.0, 22.5, 25.5)))
    assert win.wins and "separated by 2.5" in win.reason
    # A margin on top of the interval gap: 2.5 apart is not enough for a margin of 3.
    assert not registry.decide(champ, registry.standing_of_metrics(metrics(24.0, 22.5, 25.5)), margin=3.0).wins


def test_margin_gate_and_the_fallback_without_intervals():
    champ = champion(30.0)
    assert not registry.decide(champ, registry.standing_of_metrics(metrics(29.5)), "margin", 1.0).wins
    assert registry.decide(champ, registry.standing_of_metrics(metrics(28.5)), "margin", 1.0).wins
    d = registry.decide(champ, registry.standing_of_metrics(metrics(29.5, 28.0, 31.0)), "interval", 0.0)
    assert d.wins and "no interval on both sides" in d.reason  # the champion has none: values decide
    # Higher is better: the challenger's low edge must clear the champion's high edge.
    hi = {"primary_metric": "acc", "primary_higher_is_better": True, "acc": 0.9, "acc_ci_low": 0.85,
          "acc_ci_high": 0.95, "fingerprint": {"classes": fingerprint.make(["acc"], **PARTS)}}
    champ_hi = registry.standing_of_version(SimpleNamespace(version="1", tags=registry.version_tags(
        registry.standing_of_metrics({**hi, "acc": 0.8, "acc_ci_low": 0.75, "acc_ci_high": 0.84}))))
    assert registry.decide(champ_hi, registry.standing_of_metrics(hi)).wins
    assert not registry.decide(champ_hi, registry.standing_of_metrics({**hi, "acc_ci_low": 0.83})).wins


def test_a_champion_with_another_fingerprint_is_not_ranked_against():
    other = fingerprint.make(FP["metrics"].split(), **{**PARTS, "generated": "500", "seed": "7"})
    d = registry.decide(champion(30.0, 28.0, 32.0, fp=other), registry.standing_of_metrics(metrics(10.0, 9.0, 11.0)))
    assert d.outcome == "not-ranked" and not d.wins
    assert "generated: champion '500' vs this '2000'" in d.reason and "seed" in d.reason
    assert "eval.n_samples" in d.reason and "eval.seed" in d.reason and "ck/last.pt" in d.reason
    old = registry.standing_of_version(SimpleNamespace(version="3", tags={
        "ganzoo.primary_metric": "fid_classifier", "ganzoo.primary_value": "50.0", "ganzoo.higher_is_better": "False"}))
    d = registry.decide(old, registry.standing_of_metrics(metrics(10.0)))
    assert d.outcome == "not-ranked" and "registered before fingerprints" in d.reason


class SlowRegistry:
    """The two calls `settle` makes, answering after `delay` seconds like a busy server."""

    def __init__(self, champion_tags: dict, delay: float = 0.05):
        self.versions = {"1": SimpleNamespace(version="1", tags=champion_tags)}
        self.aliases = {"champion": "1"}
        self.delay, self.lock = delay, threading.Lock()

    def add(self, version: str, m: dict) -> None:
        tags = registry.version_tags(registry.standing_of_metrics(m))
        self.versions[version] = SimpleNamespace(version=version, tags=tags)

    def get_model_version_by_alias(self, name, alias):
        with self.lock:
            v = self.aliases.get(alias)
        time.sleep(self.delay)
        if v is None:
            raise MlflowException(f"no alias {alias}")
        return self.versions[v]

    def set_registered_model_alias(self, name, alias, version):
        time.sleep(self.delay / 2)
        with self.lock:
            self.aliases[alias] = version


def race(client, lock):
    """v2 (FID 20) and v3 (FID 25) both beat v1 (30); v3 registers a moment after v2."""
    client.add("2", metrics(20.0, 19.0, 21.0))
    client.add("3", metrics(25.0, 24.0, 26.0))
    out = {}

    def register(version):
        chall = registry.standing_of_version(client.versions[version])
        out[version] = registry.settle(client, "m", version, chall, "interval", 0.0, lock)[0]

    threads = [threading.Thread(target=register, args=(v,)) for v in ("2", "3")]
    threads[0].start()
    time.sleep(0.01)
    threads[1].start()
    for t in threads:
        t.join()
    return out


def test_concurrent_registers_crown_the_better_model(tmp_path):
    # Without the lock both read v1 as champion, both win against it, and v3's later alias move
    # overwrites v2's: the worse model would be champion.
    client = SlowRegistry(registry.version_tags(registry.standing_of_metrics(metrics(30.0, 29.0, 31.0))))
    out = race(client, tmp_path / "registry.lock")
    assert client.aliases["champion"] == "2", out
    assert client.aliases["challenger"] == "3" or "beats champion v3" in out["2"].reason
    assert "champion v1" in out["2"].reason or "champion v1" in out["3"].reason  # one of them decided first


def test_settle_decides_again_when_the_champion_moved_under_it():
    client = SlowRegistry(registry.version_tags(registry.standing_of_metrics(metrics(30.0, 29.0, 31.0))), 0.0)
    client.add("2", metrics(20.0, 19.0, 21.0))
    client.add("3", metrics(25.0, 24.0, 26.0))
    reads = []
    real = client.get_model_version_by_alias

    def read(name, alias):  # another machine crowns v2 between this register's two reads
        reads.append(alias)
        if len(reads) == 2:
            client.aliases["champion"] = "2"
        return real(name, alias)

    client.get_model_version_by_alias = read
    decision, against = registry.settle(client, "m", "3", registry.standing_of_version(client.versions["3"]),
                                        "interval", 0.0, None)
    assert not decision.wins and against.version == "2" and client.aliases == {"champion": "2", "challenger": "3"}


def test_decision_artifact_shows_both_sides_and_why():
    md = decision_markdown({"name": "ganzoo-dcgan-digits", "version": 4, "alias": "challenger", "outcome": "challenger",
                            "metric": "fid_classifier", "value": 29.0, "ci_low": 27.1, "ci_high": 31.0,
                            "previous_champion": 2, "previous_value": 30.0, "previous_ci_low": 28.0,
                            "previous_ci_high": 32.0, "higher_is_better": False, "gate": "interval", "margin": 0.0,
                            "fingerprint": "abc123", "reason": "fid 29 vs 30 | overlap (within noise)"})
    assert "**challenger**" in md and "29 [27.1, 31]" in md and "30 [28, 32]" in md and "champion before (v2)" in md
    assert "lower is better" in md and "`abc123`" in md and "overlap (within noise)" in md and "\\|" in md

"""`ganzoo register`: log the generator as a pyfunc model, register a version, and move the
`champion` alias only when the primary metric beats the champion's by more than the noise.

Each version is tagged with its primary metric (`ganzoo.primary_metric`, `ganzoo.primary_value`,
`ganzoo.higher_is_better`, and its interval `ganzoo.primary_ci_low/high` when the evaluation
gives one), the fingerprint of that metric (`ganzoo.fingerprint` and one
`ganzoo.fingerprint.<part>` tag per part), every numeric metric (`metric.<name>`), and, once
decided, the decision (`ganzoo.decision`: champion, challenger or not-ranked, with
`ganzoo.decision.reason`). The champion's score is read from its version, not recomputed.

Gating (`tracking.champion_gate`, `tracking.champion_margin`):
- a champion whose primary metric, direction or metric fingerprint differs is not ranked
  against (the reason names the differing parts and how to re-evaluate the champion);
- `interval` (default): the challenger wins only when its interval and the champion's do not
  overlap, with a gap above the margin; where either has no interval, the values are compared
  with the margin instead, and the reason says so;
- `margin`: the challenger's value must beat the champion's by more than the margin.
Anything else, a tie within noise included, gives the new version `challenger`; the champion stays.

Concurrent `ganzoo register` calls for one model would otherwise both read the old champion,
both win against it, and the slower alias move would crown the worse model. The decision and the
alias move therefore run under a file lock per registered model (beside a SQLite store, else in
the temp folder: every register on this machine), and the champion is read again right before
the alias moves, so a writer the lock cannot see (another machine on a shared server) makes
this one decide again instead of overwriting it unseen.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout  # torch's own dependency

from ganzoo.config import Config, flatten
from ganzoo.errors import ConfigError
from ganzoo.evaluation import fingerprint as fp
from ganzoo.tracking import store

CHAMPION, CHALLENGER = "champion", "challenger"
NOT_RANKED = "not-ranked"
DEFAULT_PRIMARY = "fid_classifier"
LOCK_TIMEOUT_S = 120
RECHECKS = 5
# What to set so the champion is evaluated like the challenger, per fingerprint part.
PART_SETTINGS = {
    "extractor": "eval.features, eval.classifier_steps, eval.inception_weights",
    "input": "eval.features (and the same data.image_size)",
    "reference": "the same prepared data (data.*) and eval.n_samples",
    "generated": "eval.n_samples",
    "seed": "eval.seed",
    "estimator": "eval.kid_subset_size, eval.pr_k, eval.bootstrap, eval.ci_level",
}


def primary_metric(metrics: dict) -> tuple[str, float, bool]:
    """(name, value, higher_is_better) of the metric that decides the champion."""
    name = metrics.get("primary_metric") or DEFAULT_PRIMARY
    higher = bool(metrics.get("primary_higher_is_better", False))
    value = flatten(metrics).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"metrics have no numeric {name!r} (the primary metric); run `ganzoo evaluate` "
                          f"for this checkpoint before `ganzoo register`")
    return name, float(value), higher


def beats(value: float, champion: float, higher_is_better: bool) -> bool:
    """Strictly better; NaN never wins, and anything beats a NaN champion."""
    if math.isnan(value):
        return False
    if math.isnan(champion):
        return True
    return value > champion if higher_is_better else value < champion


def registered_name(cfg: Config, trained: Config | None = None) -> str:
    """tracking.registered_name, else ganzoo-<variant>-<source> of the config the model was trained with."""
    trained = trained or cfg
    return cfg.tracking.registered_name or f"ganzoo-{trained.variant}-{trained.data.source}"


# --------------------------------------------------------------------------- standings and decisions

@dataclass(frozen=True)
class Standing:
    """One side of a comparison: a primary metric's value, interval and fingerprint."""

    metric: str
    value: float
    higher: bool
    low: float | None = None
    high: float | None = None
    fingerprint: dict | None = None
    version: str | None = None
    checkpoint: str | None = None

    def shown(self) -> str:
        interval = f" [{self.low:.4g}, {self.high:.4g}]" if self.low is not None and self.high is not None else ""
        return f"{self.value:.4g}{interval}"


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def standing_of_metrics(metrics: dict, checkpoint: str | None = None) -> Standing:
    """The challenger: its metrics.json."""
    metric, value, higher = primary_metric(metrics)
    flat = flatten(metrics)
    return Standing(metric, value, higher, _number(flat.get(f"{metric}_ci_low")),
                    _number(flat.get(f"{metric}_ci_high")), fp.of_metric(metrics, metric), checkpoint=checkpoint)


def version_tags(s: Standing) -> dict[str, str]:
    tags = {"ganzoo.primary_metric": s.metric, "ganzoo.primary_value": repr(s.value),
            "ganzoo.higher_is_better": str(s.higher)}
    if s.low is not None and s.high is not None:
        tags.update({"ganzoo.primary_ci_low": repr(s.low), "ganzoo.primary_ci_high": repr(s.high)})
    if s.fingerprint:
        tags["ganzoo.fingerprint"] = str(s.fingerprint.get("hash"))
        tags.update({f"ganzoo.fingerprint.{p}": str(s.fingerprint.get(p)) for p in fp.PARTS})
    if s.checkpoint:
        tags["ganzoo.checkpoint"] = s.checkpoint
    return tags


def standing_of_version(version) -> Standing:
    """The champion: read back from its version's tags."""
    tags = version.tags
    parts = {p: tags[f"ganzoo.fingerprint.{p}"] for p in fp.PARTS if f"ganzoo.fingerprint.{p}" in tags}
    fingerprint = {**parts, "hash": tags["ganzoo.fingerprint"]} if "ganzoo.fingerprint" in tags else None
    value = _number(tags.get("ganzoo.primary_value"))
    return Standing(str(tags.get("ganzoo.primary_metric")), math.nan if value is None else value,
                    tags.get("ganzoo.higher_is_better") == "True", _number(tags.get("ganzoo.primary_ci_low")),
                    _number(tags.get("ganzoo.primary_ci_high")), fingerprint, str(version.version),
                    tags.get("ganzoo.checkpoint"))


@dataclass(frozen=True)
class Decision:
    outcome: str  # champion | challenger | not-ranked
    reason: str

    @property
    def wins(self) -> bool:
        return self.outcome == CHAMPION


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _refusal(champ: Standing, chall: Standing) -> str:
    parts = fp.differences(chall.fingerprint, champ.fingerprint)
    if champ.fingerprint is None:
        what = f"champion v{champ.version} has no fingerprint for {champ.metric} (registered before fingerprints)"
    elif chall.fingerprint is None:
        what = f"this evaluation has no fingerprint for {chall.metric} (evaluated before fingerprints)"
    else:
        shown = "; ".join(f"{p}: champion {_short(champ.fingerprint.get(p, ''))!r} vs this "
                          f"{_short(chall.fingerprint.get(p, ''))!r}" for p in parts)
        what = f"their {chall.metric} fingerprints differ in {shown}"
    where = f" ({champ.checkpoint})" if champ.checkpoint else ""
    settings = "; ".join(dict.fromkeys(PART_SETTINGS[p] for p in parts))
    return (f"not ranked against champion v{champ.version}: {what}. Re-evaluate the champion's checkpoint{where} "
            f"with this evaluation's settings ({settings}) and register it again, or evaluate this one like the "
            "champion")


def decide(champ: Standing | None, chall: Standing, gate: str = "interval", margin: float = 0.0) -> Decision:
    """Whether the challenger takes `champion`, and why, in one line."""
    if champ is None:
        return Decision(CHAMPION, "there was no champion")
    direction = "higher" if chall.higher else "lower"
    if champ.metric != chall.metric or champ.higher != chall.higher:
        return Decision(NOT_RANKED, f"champion v{champ.version} is scored by {champ.metric!r}, not {chall.metric!r} "
                                    f"({direction} is better), so they cannot be compared; move the alias by hand "
                                    "if this one should win")
    if fp.differences(chall.fingerprint, champ.fingerprint):
        return Decision(NOT_RANKED, _refusal(champ, chall))
    vs = f"{chall.metric} {chall.shown()} vs champion v{champ.version}'s {champ.shown()} ({direction} is better"
    if math.isnan(chall.value) or math.isnan(champ.value):
        wins = beats(chall.value, champ.value, chall.higher)
        return Decision(CHAMPION if wins else CHALLENGER, f"{vs}): {'beats' if wins else 'does not beat'} it")
    sign = 1.0 if chall.higher else -1.0
    edges = (chall.low, chall.high, champ.low, champ.high)
    intervals = None not in edges
    if gate == "interval" and intervals:
        c_low, c_high, k_low, k_high = (float(e) for e in edges if e is not None)
        # The challenger's worst edge against the champion's best edge.
        gap = sign * ((c_low - k_high) if chall.higher else (c_high - k_low))
        how = f"intervals {'separated by' if gap > 0 else 'overlap by'} {abs(gap):.4g}"
    else:
        gap = sign * (chall.value - champ.value)
        why_values = "" if gate == "margin" else "; no interval on both sides, so values are compared"
        how = f"{'better' if gap > 0 else 'not better'} by {abs(gap):.4g}{why_values}"
    if gap > margin:
        return Decision(CHAMPION, f"{vs}; {how}, margin {margin:g}): beats champion v{champ.version}")
    noise = "within noise" if gap > 0 or (gate == "interval" and intervals) else "worse or equal"
    return Decision(CHALLENGER, f"{vs}; {how}, margin {margin:g}): does not beat champion v{champ.version} "
                                f"({noise})")


# --------------------------------------------------------------------------- the alias move

def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no registered model yet, or no champion alias
        return None


def lock_path(uri: str, name: str) -> Path:
    """One lock file per store and registered model: beside a SQLite store (in its mlartifacts/
    folder, as store.open_client's), else in the temp folder."""
    key = hashlib.sha256(f"{uri}\n{name}".encode()).hexdigest()[:16]
    db = store.sqlite_path(uri)
    folder = db.resolve().parent / "mlartifacts" if db is not None else Path(tempfile.gettempdir())
    return folder / f".ganzoo-registry-{key}.lock"


@contextlib.contextmanager
def holding(lock: Path | None, name: str):
    """The per-model registry lock (nothing where there is no lock file to share)."""
    if lock is None:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise ConfigError(f"another `ganzoo register` of {name} has held {lock} for {LOCK_TIMEOUT_S} s; "
                          "wait for it, or delete the lock file if no register is running") from None


def settle(client, name: str, version: str, chall: Standing, gate: str, margin: float,
           lock: Path | None) -> tuple[Decision, Standing | None]:
    """Decide against the current champion and move the alias, under the lock; -> (decision,
    the champion it was decided against)."""
    with holding(lock, name):
        return _settle(client, name, version, chall, gate, margin)


def _settle(client, name, version, chall, gate, margin) -> tuple[Decision, Standing | None]:
    current = _champion(client, name)
    for _ in range(RECHECKS):
        champ = standing_of_version(current) if current is not None else None
        decision = decide(champ, chall, gate, margin)
        again = _champion(client, name)  # re-read right before the move: a writer the lock cannot see
        if _version_of(again) == _version_of(current):
            break
        current = again
    else:
        raise ConfigError(f"the champion of {name} kept changing while registering v{version}; register again")
    client.set_registered_model_alias(name, CHAMPION if decision.wins else CHALLENGER, version)
    return decision, champ


def _version_of(v) -> str | None:
    return None if v is None else str(v.version)


# --------------------------------------------------------------------------- register

HASH_TAG = "ganzoo.checkpoint_sha256"
DUPLICATE, NOT_REGISTERED = "duplicate", "not-registered"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identical_version(client, name: str, digest: str):
    """The version of `name` registered from a checkpoint with these exact bytes, or None. Every
    version is read (a model has tens, not thousands): a tag filter is not searchable in every
    store MLflow supports."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:  # no such registered model yet
        return None
    same = [v for v in versions if v.tags.get(HASH_TAG) == digest]
    return min(same, key=lambda v: int(v.version)) if same else None


def description(decision: Decision, gate: str, margin: float, digest: str, checkpoint: Path, step) -> str:
    """The version's description in the registry UI: what was decided and why, then its source."""
    return (f"{decision.outcome}: {decision.reason}.\n\nGate: {gate}, margin {margin:g}. Checkpoint {checkpoint} "
            f"(step {step}, sha256 {digest[:16]}).")


def _outcome(name: str, chall: Standing, gate: str, margin: float, **fields) -> dict:
    """The result's common keys (what `ganzoo register --json` prints and the flows report)."""
    base = {"name": name, "version": None, "alias": None, "champion": False, "gate": gate, "margin": margin,
            "metric": chall.metric, "value": chall.value, "ci_low": chall.low, "ci_high": chall.high,
            "higher_is_better": chall.higher, "fingerprint": (chall.fingerprint or {}).get("hash"),
            "previous_champion": None, "previous_value": None, "previous_ci_low": None, "previous_ci_high": None,
            "run_id": None, "model_uri": None, "duplicate_of": None}
    base.update(fields)
    return base


def _with_champion(result: dict, champ: Standing | None) -> dict:
    if champ is not None:
        result.update({"previous_champion": int(champ.version) if champ.version else None,
                       "previous_value": champ.value, "previous_ci_low": champ.low, "previous_ci_high": champ.high})
    return result


def _duplicate(client, name: str, chall: Standing, gate: str, margin: float, same, digest: str) -> dict:
    """The outcome for a checkpoint whose exact bytes version `same` already holds."""
    aliases = sorted(client.get_model_version(name, same.version).aliases or [])  # search omits them
    held = f" (alias {', '.join(aliases)})" if aliases else ""
    return _outcome(name, chall, gate, margin, outcome=DUPLICATE, duplicate_of=int(same.version),
                    alias=aliases[0] if aliases else None, champion=CHAMPION in aliases,
                    reason=f"identical checkpoint (sha256 {digest[:16]}) already registered as v{same.version}",
                    model_uri=f"models:/{name}/{same.version}", run_id=same.run_id,
                    message=f"{name} v{same.version}{held} holds this exact checkpoint; no new version registered")


def _withdraw(client, name: str, version, model_id: str | None) -> None:
    """Remove a version this register added, and the logged model behind it (MLflow marks it
    deleted, as `mlflow.delete_logged_model` does; `mlflow gc` frees its files), so a register
    that ends without a version leaves no model in the run either."""
    client.delete_model_version(name, version)
    if model_id:
        client.delete_logged_model(model_id)


def register_checkpoint(cfg: Config, checkpoint_path, metrics: dict) -> dict:
    """Register the checkpoint as a new version of its model, unless a version with the same
    bytes exists (none is added; `outcome` "duplicate"), or `tracking.only_champion` is set and it
    would not become champion (none is added; `outcome` "not-registered"). -> the decision."""
    import mlflow

    from ganzoo.training.checkpoint import load_variant

    checkpoint_path = Path(checkpoint_path)
    variant, ckpt_cfg, ckpt = load_variant(checkpoint_path)
    if ckpt_cfg.variant != cfg.variant:
        raise ConfigError(f"{checkpoint_path} holds a {ckpt_cfg.variant} model but variant={cfg.variant}; "
                          f"pass --set variant={ckpt_cfg.variant} or another --checkpoint")
    for key, have in (("variant", ckpt_cfg.variant), ("step", ckpt["step"])):
        if key in metrics and metrics[key] != have:
            raise ConfigError(f"the metrics are for {key} {metrics[key]!r} but {checkpoint_path} is at {key} "
                              f"{have!r}; run `ganzoo evaluate` for this checkpoint before `ganzoo register`")
    chall = standing_of_metrics(metrics, str(checkpoint_path))
    name = registered_name(cfg, ckpt_cfg)
    uri = store.resolve_uri(cfg.tracking.uri)
    store.require_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client, experiment_id = store.open_client(uri, cfg.tracking.experiment)
    gate, margin = cfg.tracking.champion_gate, cfg.tracking.champion_margin

    digest = file_sha256(checkpoint_path)
    same = identical_version(client, name, digest)
    if same is not None:  # a scheduled flow re-registering an unchanged checkpoint, or a second `register`
        return _duplicate(client, name, chall, gate, margin, same, digest)

    if cfg.tracking.only_champion:  # decided before anything is logged: a loser leaves no trace
        current = _champion(client, name)
        champ_now = standing_of_version(current) if current is not None else None
        early = decide(champ_now, chall, gate, margin)
        if not early.wins:
            return _with_champion(_outcome(
                name, chall, gate, margin, outcome=NOT_REGISTERED, reason=early.reason,
                message=f"not registered (tracking.only_champion): {early.reason}"), champ_now)

    # The model is an output of the run that trained the checkpoint when this store has it, logged
    # without reopening that run (its status and end time stay the training's); else of a short
    # run of its own.
    run_id, _ = store.sidecar_run(client, uri, checkpoint_path)
    own_run = run_id is None
    if own_run:
        run_id = client.create_run(experiment_id, run_name=store.run_name(ckpt_cfg),
                                   tags={**store.run_tags(ckpt_cfg), "ganzoo.stage": "register"}).info.run_id
    mlflow.set_experiment(experiment_id=experiment_id)  # where MLflow files the logged model
    try:
        from ganzoo.tracking.pyfunc import log_generator

        info = log_generator(variant, checkpoint_path, run_id=run_id)
    finally:
        if own_run:
            client.set_terminated(run_id, "FINISHED")
    tags = {**version_tags(chall), "ganzoo.variant": ckpt_cfg.variant, HASH_TAG: digest,
            "ganzoo.dataset": ckpt_cfg.data.source, "ganzoo.checkpoint_step": str(ckpt["step"]),
            **{f"metric.{k}": repr(v) for k, v in store.numeric_metrics(metrics).items()}}
    version = mlflow.register_model(info.model_uri, name, tags=tags)

    with holding(lock_path(uri, name), name):
        # Checked again under the lock: a register of the same bytes that ran beside this one (both
        # found none above) holds the lower version; this one is removed and reports it.
        same = identical_version(client, name, digest)
        if same is not None and str(same.version) != str(version.version):
            _withdraw(client, name, version.version, info.model_id)
            return _duplicate(client, name, chall, gate, margin, same, digest)
        decision, champ = _settle(client, name, str(version.version), chall, gate, margin)
    if cfg.tracking.only_champion and not decision.wins:  # another register crowned a better one meanwhile
        _withdraw(client, name, version.version, info.model_id)
        return _with_champion(_outcome(
            name, chall, gate, margin, outcome=NOT_REGISTERED, reason=decision.reason, run_id=run_id,
            message=f"not registered (tracking.only_champion): {decision.reason}"), champ)
    alias = CHAMPION if decision.wins else CHALLENGER
    for key, value in (("ganzoo.decision", decision.outcome), ("ganzoo.decision.reason", decision.reason),
                       ("ganzoo.decision.gate", f"{gate}, margin {margin:g}"),
                       ("ganzoo.decision.against", f"v{champ.version}" if champ else "none")):
        client.set_model_version_tag(name, version.version, key, value)
    client.update_model_version(name, version.version, description=description(
        decision, gate, margin, digest, checkpoint_path, ckpt["step"]))
    kept = "" if decision.wins or champ is None else f"; champion stays v{champ.version}"
    return _with_champion(_outcome(
        name, chall, gate, margin, version=int(version.version), alias=alias, champion=decision.wins,
        outcome=decision.outcome, reason=decision.reason, run_id=run_id, model_uri=f"models:/{name}@{alias}",
        message=f"registered {name} v{version.version} as {alias}: {decision.reason}{kept}. "
                f"Load it with models:/{name}@{alias}"), champ)

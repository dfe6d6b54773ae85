"""`ganzoo register`: log the generator as a pyfunc model, register a version, and move the
`champion` alias only when the primary metric beats the champion's.

Each version is tagged with its primary metric (`ganzoo.primary_metric`, `ganzoo.primary_value`,
`ganzoo.higher_is_better`) and every numeric metric (`metric.<name>`), so the champion's score is
read from its version, not recomputed. The primary metric is the one the evaluation declares in
`metrics["primary_metric"]` (with `metrics["primary_higher_is_better"]`), else `fid_classifier`,
lower is better. A version that does not beat the champion, including a tie or a champion scored
by another metric, gets the alias `challenger` and the champion stays.
"""

from __future__ import annotations

import math
from pathlib import Path

from ganzoo.config import Config, flatten
from ganzoo.errors import ConfigError
from ganzoo.tracking import store

CHAMPION, CHALLENGER = "champion", "challenger"
DEFAULT_PRIMARY = "fid_classifier"


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


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no registered model yet, or no champion alias
        return None


def _decide(champion, metric: str, value: float, higher: bool) -> tuple[bool, str]:
    """(becomes champion, why)."""
    direction = "higher" if higher else "lower"
    if champion is None:
        return True, "there was no champion"
    tags = champion.tags
    if tags.get("ganzoo.primary_metric") != metric or tags.get("ganzoo.higher_is_better") != str(higher):
        return False, (f"champion v{champion.version} is scored by {tags.get('ganzoo.primary_metric')!r}, not "
                       f"{metric!r} ({direction} is better), so they cannot be compared; move the alias by hand "
                       f"if this one should win")
    old = float(tags["ganzoo.primary_value"])
    if beats(value, old, higher):
        return True, f"{metric} {value:.4g} beats champion v{champion.version}'s {old:.4g} ({direction} is better)"
    return False, f"{metric} {value:.4g} does not beat champion v{champion.version}'s {old:.4g} ({direction} is better)"


def register_checkpoint(cfg: Config, checkpoint_path, metrics: dict) -> dict:
    import mlflow

    from ganzoo.tracking.pyfunc import log_generator
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
    metric, value, higher = primary_metric(metrics)
    name = registered_name(cfg, ckpt_cfg)
    uri = store.resolve_uri(cfg.tracking.uri)
    store.require_reachable(uri)
    mlflow.set_tracking_uri(uri)
    client, experiment_id = store.open_client(uri, cfg.tracking.experiment)

    # The model goes into the run that trained the checkpoint when this store has it.
    run_id, _ = store.sidecar_run(client, uri, checkpoint_path)
    start = {"run_id": run_id} if run_id else {
        "experiment_id": experiment_id, "run_name": store.run_name(ckpt_cfg),
        "tags": {**store.run_tags(ckpt_cfg), "ganzoo.stage": "register"}}
    with mlflow.start_run(**start) as run:
        info = log_generator(variant, checkpoint_path)
    tags = {"ganzoo.primary_metric": metric, "ganzoo.primary_value": repr(value),
            "ganzoo.higher_is_better": str(higher), "ganzoo.variant": ckpt_cfg.variant,
            "ganzoo.dataset": ckpt_cfg.data.source, "ganzoo.checkpoint_step": str(ckpt["step"]),
            **{f"metric.{k}": repr(v) for k, v in store.numeric_metrics(metrics).items()}}
    version = mlflow.register_model(info.model_uri, name, tags=tags)

    champion = _champion(client, name)
    wins, why = _decide(champion, metric, value, higher)
    alias = CHAMPION if wins else CHALLENGER
    client.set_registered_model_alias(name, alias, version.version)
    kept = "" if wins else f"; champion stays v{champion.version}"
    return {
        "name": name, "version": int(version.version), "alias": alias, "champion": wins,
        "metric": metric, "value": value, "higher_is_better": higher,
        "previous_champion": int(champion.version) if champion is not None else None,
        "previous_value": float(champion.tags["ganzoo.primary_value"])
        if champion is not None and "ganzoo.primary_value" in champion.tags else None,
        "run_id": run.info.run_id, "model_uri": f"models:/{name}@{alias}",
        "message": f"registered {name} v{version.version} as {alias}: {why}{kept}. Load it with models:/{name}@{alias}",
    }

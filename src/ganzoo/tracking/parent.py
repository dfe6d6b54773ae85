"""A parent MLflow run that groups child runs: a sweep over variants is one parent run (named
after the sweep's flow run) with one child training run per variant, which MLflow's UI nests
under it. The children find their parent through `ganzoo.tracking.context` (the
`mlflow.parentRunId` tag, as `mlflow.start_run(nested=True)` sets it).

The parent holds what belongs to the whole sweep: its variants and overrides as params, the
comparison table as `comparison.json`, and FINISHED or FAILED when a variant failed. Like all
tracking, it never stops the work: a store that cannot be reached is reported in one line and
the sweep runs without a parent.
"""

from __future__ import annotations

import sys

from ganzoo.config import Config
from ganzoo.tracking import store


def open_parent_run(cfg: Config, name: str, params: dict[str, str] | None = None,
                    tags: dict[str, str] | None = None) -> str | None:
    """Create the parent run (RUNNING) in cfg's store and experiment -> its id; None when tracking
    is off or the store cannot be reached."""
    if not cfg.tracking.enabled:
        return None
    uri = store.resolve_uri(cfg.tracking.uri)
    why = store.unreachable_reason(uri)
    if why is None:
        try:
            from mlflow.entities import Param

            store.tune_http_client(uri)
            client, experiment_id = store.open_client(uri, cfg.tracking.experiment)
            run = client.create_run(experiment_id, run_name=name,
                                    tags={**store.context_tags(), "ganzoo.stage": "sweep", **(tags or {})})
            if params:
                client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            return run.info.run_id
        except Exception as exc:  # noqa: BLE001 -- a sweep without its grouping run still trains every variant
            why = f"{type(exc).__name__}: {exc}"
    print(f"{store.WARN_PREFIX} no parent run for {name} ({str(why).splitlines()[0]}); the variants' runs "
          "are logged ungrouped", file=sys.stderr)
    return None


def close_parent_run(cfg: Config, run_id: str | None, failed: bool, comparison: list[dict] | None = None) -> None:
    """Attach the comparison table and end the parent run."""
    if run_id is None:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store.resolve_uri(cfg.tracking.uri))
    try:
        if comparison is not None:
            client.log_dict(run_id, {"rows": comparison}, "comparison.json")
    finally:
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

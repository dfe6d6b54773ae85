"""The sweep flow: train, evaluate and register several variants, then compare them.

Each variant runs the pipeline's own tasks (same stages, same retry policy). In MLflow the sweep
is one parent run (named after the flow run, with the comparison table as `comparison.json`) and
each variant's training a child run under it (`<sweep run name>/<variant>`). Variants run
`max_parallel` at a time through Prefect futures: 1 (the default) runs them one after another,
which is right on a CPU, where one training already uses every core; on a GPU with memory to
spare, 2-4 overlap data loading, evaluation and the small networks' idle kernels.

    python -m flows.sweep [--variants dcgan,lsgan,wgan_gp] [--max-parallel N] [--params P] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.pipeline import (
    RETRY_DELAY_S,
    USER_ERRORS,
    artifact_key,
    classifier_task,
    config_task,
    evaluate_task,
    fmt,
    patient_temporary_server,
    prepare_task,
    register_task,
    report_task,
    train_task,
    with_retry_delay,
)
from flows.runlog import stamp
from ganzoo.config import add_arguments, flatten
from ganzoo.data.prepared import prepared_path
from ganzoo.errors import EXIT_USER_ERROR, ConfigError
from ganzoo.tracking.parent import close_parent_run, open_parent_run

DEFAULT_VARIANTS = ["dcgan", "lsgan", "wgan_gp"]


class SweepError(RuntimeError):
    """Some variants failed; the others finished and are in the comparison table."""


def comparison_rows(results: dict[str, dict]) -> list[dict]:
    """One row per variant: its metrics (same columns for all) and its registry decision."""
    metric_keys: list[str] = []
    for r in results.values():
        for k in flatten(r.get("metrics") or {}):
            # A fingerprint's parts are long descriptions; its hash (fingerprint_<family>) is a column.
            if k not in metric_keys and k not in ("variant", "status", "registry") and not k.startswith("fingerprint."):
                metric_keys.append(k)
    rows = []
    for name, r in results.items():
        metrics = flatten(r.get("metrics") or {})
        row = {"variant": name, "status": "failed" if r.get("error") else "ok"}
        row.update({k: fmt(metrics[k]) if k in metrics else "" for k in metric_keys})
        decision = r.get("registry")
        row["registry"] = r.get("error") or (decision.get("message", "") if decision else "not registered")
        rows.append(row)
    return rows


def sweep_run_name() -> str:
    """flow_run_name of the sweep: `sweep-<variants>-<time>`."""
    from prefect.runtime import flow_run

    return f"sweep-{'-'.join(flow_run.parameters.get('variants') or DEFAULT_VARIANTS)}-{stamp()}"


@flow(name="ganzoo-sweep", log_prints=True, flow_run_name=sweep_run_name)
def sweep(variants: list[str] | None = None, params: str | None = "params.yaml",
          overrides: list[str] | None = None, register_model: bool = True, max_parallel: int = 1,
          resume: str = "auto", retry_delay_s: float = RETRY_DELAY_S) -> list[dict]:
    """Train/evaluate/register each variant with the same params and overrides; end with a
    comparison table artifact. A failing variant does not stop the others; the flow fails at the
    end, naming it."""
    variants = list(variants or DEFAULT_VARIANTS)
    if max_parallel < 1:
        raise ConfigError(f"max_parallel={max_parallel}: must be >= 1 (1 runs variants one after another)")
    # Every config is validated before any work: a typo in one variant's section fails the sweep now.
    configs = {v: config_task(params, [*(overrides or []), f"variant={v}"]) for v in variants}
    prepare, classifier, train, evaluate, registering, report = (
        with_retry_delay(t, retry_delay_s)
        for t in (prepare_task, classifier_task, train_task, evaluate_task, register_task, report_task))

    # Variants that share a dataset prepare it (and fit its evaluation classifier) once, before
    # any training reads it.
    results: dict[str, dict] = {}
    prepare_errors: dict = {}
    for v, cfg in configs.items():
        key = prepared_path(cfg.data)
        if key not in prepare_errors:
            prepare_errors[key] = _error_of(prepare, cfg) or _error_of(classifier, cfg)
        if prepare_errors[key]:
            results[v] = {"error": prepare_errors[key]}

    # One MLflow parent run for the sweep, a child training run per variant (named <sweep>/<variant>).
    from prefect.runtime import flow_run

    name = str(flow_run.name or f"sweep-{'-'.join(variants)}-{stamp()}")
    first = configs[variants[0]]
    parent = open_parent_run(first, name, params={"variants": ",".join(variants),
                                                  "overrides": " ".join(overrides or []) or "none"},
                             tags={"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": name})
    todo = [v for v in variants if v not in results]
    for start in range(0, len(todo), max_parallel):
        batch = todo[start:start + max_parallel]
        trainings = {v: train.submit(configs[v], resume, run_name=f"{name}/{v}", parent_run_id=parent)
                     for v in batch}  # run concurrently
        for v, trained in trainings.items():  # evaluate each as soon as it is trained
            results[v] = _finish(configs[v], trained, evaluate, registering, report, register_model)

    rows = comparison_rows({v: results[v] for v in variants})
    create_table_artifact(rows, key=artifact_key("sweep", "comparison"),
                          description=f"ganzoo sweep over {', '.join(variants)}: metrics and registry decisions")
    failed = {v: r["error"] for v, r in results.items() if r.get("error")}
    close_parent_run(first, parent, failed=bool(failed), comparison=rows)
    if failed:
        raise SweepError("; ".join(f"{v}: {e}" for v, e in failed.items()))
    return rows


def _error_of(task_fn, *args) -> str | None:
    try:
        task_fn(*args)
    except Exception as err:  # noqa: BLE001 -- the task's own exception, after its retries
        return f"{type(err).__name__}: {err}"
    return None


def _finish(cfg, trained, evaluate, registering, report, register_model: bool) -> dict:
    """Wait for one variant's training, then evaluate/register/report it; errors become its row."""
    try:
        result = trained.result()
        metrics = evaluate(cfg, result["checkpoint"])
        decision = registering(cfg, result["checkpoint"]) if register_model else None
        report(cfg, metrics, decision)
        return {"metrics": metrics, "registry": decision}
    except Exception as err:  # noqa: BLE001 -- a user error, or a transient one that outlived its retries
        return {"error": f"{type(err).__name__}: {err}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description="Train and compare several variants.")
    add_arguments(parser)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variant names")
    parser.add_argument("--max-parallel", type=int, default=1, help="variants trained at once (default 1)")
    parser.add_argument("--no-register", action="store_true")
    args = parser.parse_args(argv)
    try:
        with patient_temporary_server():
            rows = sweep(variants=[v.strip() for v in args.variants.split(",") if v.strip()], params=args.params,
                         overrides=args.overrides, register_model=not args.no_register,
                         max_parallel=args.max_parallel)
    except (*USER_ERRORS, SweepError) as err:
        print(f"ganzoo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

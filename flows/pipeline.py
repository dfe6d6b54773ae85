"""The pipeline flow: prepare -> classifier -> train -> evaluate -> register, one task per stage.

Each task calls the same `ganzoo.stages` function as `ganzoo <stage>` and the `dvc.yaml` stage, so
the files on disk are the same whichever ran them. What the flow adds is orchestration only:

- retries with exponential back-off for transient failures (I/O, network, MLflow server errors)
  and none for user errors (any GanzooError): bad params fail at once, one message;
- artifacts: the metrics, the MLflow run link and registry decision, the sample sheets (as
  images), and the training progress;
- a run log that talks: each stage's own summary (data size, classifier accuracy, resume
  decision, losses and images/s, scores, registry decision; `flows.runlog`), and run names that
  say what ran (`dcgan-digits-20250101-031500`).

    python -m flows.pipeline [--params P] [--set KEY=VALUE ...] [--no-register] [--resume auto|no|yes]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.runlog import TrainingLog, logger, pipeline_run_name
from ganzoo import stages
from ganzoo.config import Config, add_arguments, flatten, load_from_args
from ganzoo.errors import EXIT_USER_ERROR, GanzooError
from ganzoo.paths import RunPaths
from ganzoo.variants import registry

# Mistakes in params or data: one-line messages for the user, never retried.
USER_ERRORS = (GanzooError,)

RETRIES = 2
RETRY_DELAY_S = 10.0  # first retry after ~10 s, the second after ~20 s (jittered)
# OSErrors that name a user's mistake rather than a hiccup: retrying cannot fix them.
PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
# MlflowException.error_code values of a struggling server; MLflow raises INTERNAL_ERROR when
# the request itself failed (connection refused, reset, HTTP 5xx after its own retries).
TRANSIENT_MLFLOW_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
INLINE_IMAGE_MAX_BYTES = 256 * 1024  # larger sheets are linked by path, not embedded
INLINE_IMAGES_MAX = 4
# Without PREFECT_API_URL, Prefect starts a temporary server; its default 20 s start-up limit is
# too short for a first start (database creation) on a busy machine or a fresh container.
TEMPORARY_SERVER_STARTUP_S = 120


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry can fix; user errors and bugs fail at once."""
    if isinstance(exc, USER_ERRORS):
        return False
    if isinstance(exc, OSError):  # includes ConnectionError, TimeoutError, requests' errors
        return not isinstance(exc, PERMANENT_OS_ERRORS)
    if type(exc).__module__.startswith("mlflow"):  # MlflowException / RestException, no mlflow import here
        return getattr(exc, "error_code", None) in TRANSIENT_MLFLOW_CODES
    return False


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: the failed state holds the exception the task raised."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def stage_task(name: str):
    # NO_CACHE / no persisted results: stages write their own outputs (DVC's to track), and a
    # cached result would skip a stage whose files changed underneath it.
    return task(name=name, retries=RETRIES, retry_delay_seconds=exponential_backoff(RETRY_DELAY_S),
                retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient,
                cache_policy=NO_CACHE, persist_result=False)


def with_retry_delay(t, delay_s: float):
    """The task with another back-off base (tests use 0); the retry policy stays the same."""
    if delay_s == RETRY_DELAY_S:
        return t
    return t.with_options(retry_delay_seconds=exponential_backoff(delay_s))


# --------------------------------------------------------------------------- tasks

@task(name="config", cache_policy=NO_CACHE, persist_result=False)
def config_task(params: str | None, overrides: list[str]) -> Config:
    """params + overrides -> Config with the CLI's semantics; a user error fails here, before any work."""
    cfg = load_from_args(params, list(overrides))
    registry.resolve(cfg)  # validate every model.<variant> section now, not after preparing data
    return cfg


@stage_task("prepare")
def prepare_task(cfg: Config) -> dict:
    manifest = stages.prepare(cfg).manifest
    logger().info(stages.describe_prepared(manifest))
    return manifest


@stage_task("classifier")
def classifier_task(cfg: Config) -> dict:
    """The evaluation feature space, trained once per dataset and cached (dvc.yaml's `classifier`)."""
    info = stages.fit_classifier(cfg)
    logger().info(stages.describe_classifier(info))
    return info


@stage_task("train")
def train_task(cfg: Config, resume: str = "auto", run_name: str | None = None,
               parent_run_id: str | None = None) -> dict:
    """run_name: the MLflow run's (default: the flow run's name); parent_run_id: a sweep's parent run."""
    from prefect.runtime import flow_run, task_run

    from ganzoo.tracking.context import run_context

    if task_run.run_count > 1 and resume == "no":
        resume = "auto"  # a retry continues the checkpoint the failed attempt wrote
    started = time.perf_counter()
    prefect_tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or "")}
    with run_context(name=run_name or flow_run.name, parent_run_id=parent_run_id,
                     tags={k: v for k, v in prefect_tags.items() if v}):
        result = stages.train(cfg, resume=resume, hooks=[TrainingLog(artifact_key(cfg.variant, "training"))])
    elapsed = time.perf_counter() - started
    logger().info(f"trained {cfg.variant} to step {result.steps} ({stages.describe_start(result.resumed_from)}) "
                  f"in {elapsed:.1f} s -> {result.checkpoint}")
    return {"checkpoint": str(result.checkpoint), "steps": result.steps, "resumed_from": result.resumed_from,
            "elapsed_s": round(elapsed, 3)}


@stage_task("evaluate")
def evaluate_task(cfg: Config, checkpoint: str) -> dict:
    metrics = stages.evaluate(cfg, checkpoint)
    logger().info(f"evaluated {stages.describe_evaluation(metrics)}")
    return metrics


@stage_task("register")
def register_task(cfg: Config, checkpoint: str) -> dict:
    decision = stages.register(cfg, checkpoint)
    logger().info(decision.get("message", json.dumps(decision)))
    return decision


@stage_task("report")
def report_task(cfg: Config, metrics: dict, decision: dict | None) -> None:
    create_markdown_artifact(report_markdown(cfg, metrics, decision), key=artifact_key(cfg.variant, "report"),
                             description=f"ganzoo {cfg.variant}: metrics, MLflow run, registry decision")
    if decision is not None:
        create_markdown_artifact(decision_markdown(decision), key=artifact_key(cfg.variant, "registry"),
                                 description=f"ganzoo {cfg.variant}: champion decision and the numbers behind it")
    sheets = sheets_markdown(cfg)
    if sheets:
        create_markdown_artifact(sheets, key=artifact_key(cfg.variant, "samples"),
                                 description=f"ganzoo {cfg.variant}: sample sheets")
    for sheet, uri in sheet_images(cfg):  # one image artifact per sheet, each with its own history
        create_image_artifact(uri, key=artifact_key(cfg.variant, "sheet", sheet.stem),
                              description=f"ganzoo {cfg.variant}: {sheet.name}")


# --------------------------------------------------------------------------- artifacts

def artifact_key(*parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only (wgan_gp -> ganzoo-wgan-gp-...)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(("ganzoo", *parts)).lower()).strip("-")


def fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def mlflow_run_link(cfg: Config) -> str | None:
    """Markdown for the MLflow run that trained this checkpoint, from the file the tracker writes
    beside it (`checkpoints/<variant>/mlflow_run.json`); None without tracking."""
    path = RunPaths.of(cfg).sidecar
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    run_id = info.get("run_id")
    if not run_id:
        return None
    uri = info.get("tracking_uri") or cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    url = info.get("run_url")
    if not url and info.get("experiment_id") is not None:
        # A file store or sqlite has no web address: link the UI that `mlflow ui` serves on it.
        base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        url = f"{base}/#/experiments/{info['experiment_id']}/runs/{run_id}"
    text = f"[{run_id}]({url})" if url else f"`runs:/{run_id}`"
    if not uri.startswith(("http://", "https://")):
        text += f" (open with `mlflow ui --backend-store-uri {uri}`)"
    return text


def report_markdown(cfg: Config, metrics: dict, decision: dict | None) -> str:
    rows = "\n".join(f"| {k} | {fmt(v)} |" for k, v in flatten(metrics).items())
    source = registry.resolve(cfg).data.source  # what `auto` meant for this variant
    lines = [f"# ganzoo {cfg.variant} on {source} ({cfg.data.image_size}px)", "",
             "| metric | value |", "|---|---|", rows, ""]
    link = mlflow_run_link(cfg)
    lines.append(f"MLflow run: {link}" if link else "MLflow run: none (tracking disabled)")
    if decision is not None:
        lines += ["", f"Registry: {decision.get('message', json.dumps(decision))}"]
    return "\n".join(lines) + "\n"


def _with_interval(value, low, high) -> str:
    if value is None:
        return "-"
    return fmt(float(value)) + (f" [{fmt(float(low))}, {fmt(float(high))}]" if low is not None and high is not None
                                else " (no interval)")


def decision_markdown(decision: dict) -> str:
    """The registry's champion decision: outcome, both sides' numbers with their intervals, the
    gate that decided, and why (`ganzoo.tracking.registry.register_checkpoint`'s result)."""
    outcome = decision.get("outcome", decision.get("alias", "?"))
    version = decision.get("version")
    champ = decision.get("previous_champion")
    direction = "higher" if decision.get("higher_is_better") else "lower"
    if version is None:  # an identical checkpoint's version exists, or only_champion kept a loser out
        held = f" (v{decision['duplicate_of']})" if decision.get("duplicate_of") else ""
        head = f"**{outcome}**: no new version{held}"
    else:
        head = f"**{outcome}**: v{version} is now `{decision.get('alias')}`"
    rows = [("outcome", head),
            (f"this version (v{version})", _with_interval(decision.get("value"), decision.get("ci_low"),
                                                          decision.get("ci_high"))),
            (f"champion before (v{champ})" if champ else "champion before", _with_interval(
                decision.get("previous_value"), decision.get("previous_ci_low"), decision.get("previous_ci_high"))),
            ("metric", f"{decision.get('metric')} ({direction} is better)"),
            ("gate", f"{decision.get('gate')}, margin {decision.get('margin')}"),
            ("fingerprint", f"`{decision.get('fingerprint')}`"),
            ("why", str(decision.get("reason", decision.get("message", ""))).replace("|", "\\|"))]
    title = f"# Registry: {decision.get('name')}" + (f" v{version}" if version is not None else "")
    lines = [title, "", "| | |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in rows), ""]
    return "\n".join(lines)


def sheet_images(cfg: Config) -> list[tuple[Path, str]]:
    """The evaluation's sample sheets that are small enough to embed, as data URIs (the Prefect UI
    then shows them wherever it runs, with no file server): at most INLINE_IMAGES_MAX, each at
    most INLINE_IMAGE_MAX_BYTES."""
    found = []
    for sheet in sorted(RunPaths.of(cfg).eval_dir.rglob("*.png")):
        data = sheet.read_bytes()
        if len(data) <= INLINE_IMAGE_MAX_BYTES and len(found) < INLINE_IMAGES_MAX:
            found.append((sheet, f"data:image/png;base64,{base64.b64encode(data).decode()}"))
    return found


def sheets_markdown(cfg: Config) -> str | None:
    """The evaluation's sample sheets as markdown images. Small sheets are embedded as data URIs;
    large ones are linked by path, which only opens on the machine that ran the flow."""
    sheets = sorted(RunPaths.of(cfg).eval_dir.rglob("*.png"))
    if not sheets:
        return None
    embedded = dict(sheet_images(cfg))
    parts = [f"# ganzoo {cfg.variant}: sample sheets", ""]
    for sheet in sheets:
        if sheet in embedded:
            parts.append(f"**{sheet.name}**\n\n![{sheet.stem}]({embedded[sheet]})\n")
        else:
            parts.append(f"**{sheet.name}**: [{sheet.resolve()}]({sheet.resolve().as_uri()})\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- flow

@flow(name="ganzoo-pipeline", log_prints=True, flow_run_name=pipeline_run_name)
def pipeline(params: str | None = "params.yaml", overrides: list[str] | None = None,
             variant: str | None = None, register_model: bool = True,
             resume: Literal["auto", "no", "yes"] = "auto", retry_delay_s: float = RETRY_DELAY_S) -> dict:
    """prepare -> classifier -> train -> evaluate -> register for one variant.

    params/overrides: as `ganzoo --params P --set K=V`; variant: shorthand for --set variant=V.
    resume: as `ganzoo train --resume` (auto, what `dvc repro` runs, continues a compatible
    checkpoint). retry_delay_s: base of the exponential back-off between retries.
    """
    overrides = [*(overrides or []), *([f"variant={variant}"] if variant else [])]
    cfg = config_task(params, overrides)
    with_retry_delay(prepare_task, retry_delay_s)(cfg)
    with_retry_delay(classifier_task, retry_delay_s)(cfg)
    trained = with_retry_delay(train_task, retry_delay_s)(cfg, resume)
    metrics = with_retry_delay(evaluate_task, retry_delay_s)(cfg, trained["checkpoint"])
    decision = with_retry_delay(register_task, retry_delay_s)(cfg, trained["checkpoint"]) if register_model else None
    with_retry_delay(report_task, retry_delay_s)(cfg, metrics, decision)
    return {"variant": cfg.variant, "checkpoint": trained["checkpoint"], "metrics": metrics, "registry": decision}


def patient_temporary_server():
    """A longer start-up limit for Prefect's temporary server, unless the user set one."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ:
        return contextlib.nullcontext()
    return temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: TEMPORARY_SERVER_STARTUP_S})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline",
                                     description="Run prepare -> train -> evaluate -> register as a Prefect flow.")
    add_arguments(parser)  # --params / --set exactly as the `ganzoo` CLI takes them
    parser.add_argument("--no-register", action="store_true", help="stop after evaluate")
    parser.add_argument("--resume", default="auto", choices=["auto", "no", "yes"],
                        help="as `ganzoo train --resume` (default auto, as `dvc repro`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with patient_temporary_server():
            result = pipeline(params=args.params, overrides=args.overrides, register_model=not args.no_register,
                              resume=args.resume)
    except USER_ERRORS as err:
        print(f"ganzoo: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(json.dumps(result["metrics"], indent=2))
    if result["registry"] is not None:
        print(result["registry"].get("message", json.dumps(result["registry"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

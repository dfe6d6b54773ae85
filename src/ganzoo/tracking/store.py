"""Where runs go: the tracking URI, the experiment, and the sidecar that ties a checkpoint to its run.

URI: `tracking.uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the project
folder, whose artifacts go to `mlartifacts/` beside the database (set on the experiment when it
is created, so runs never scatter artifacts under whatever folder a later process runs in). The
project folder is the working directory, except under DVC: a relative SQLite path resolves
against `$DVC_ROOT`, the repository the stage belongs to. DVC sets it for every stage command,
and for `dvc exp run --queue`/`--temp` it names the original repository, not the temporary
copy the experiment runs (and DVC deletes) in (dvc/repo/experiments/queue/base.py).

Run names (`run_name`): a name a flow gave (`ganzoo.tracking.context`), else the DVC
experiment's (`$DVC_EXP_NAME`), else `<variant>-<source>-<size>-<short id>`: unique, and
saying what ran.

The sidecar `mlflow_run.json` beside a checkpoint (`checkpoints/<variant>/`) records the run that
trained it and the store it lives in; `evaluate` and `register` read it to log into that run.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ganzoo.config import Config, flatten
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_text
from ganzoo.paths import SIDECAR
from ganzoo.tracking.context import RunContext, current

DEFAULT_URI = "sqlite:///mlflow.db"
WARN_PREFIX = "[ganzoo] MLflow:"


def resolve_uri(configured: str | None = None) -> str:
    """The store to use, with a relative SQLite path made absolute: MLflow caches one store per
    URI string per process, so a relative one would keep pointing at the first working directory."""
    return canonical_uri(configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///relative` or `sqlite:////absolute` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def project_root() -> Path:
    """Where a relative store path lives: DVC's repository root when DVC runs the command (also
    for queued and temporary experiments, which run in a copy DVC deletes), else the working
    directory."""
    root = os.environ.get("DVC_ROOT")
    return Path(root) if root else Path.cwd()


def canonical_uri(uri: str) -> str:
    """Same store, same string: relative SQLite paths made absolute (against project_root())."""
    db = sqlite_path(uri)
    if db is None:
        return uri.rstrip("/")
    return f"sqlite:///{(db if db.is_absolute() else project_root() / db).resolve()}"


def artifact_location(uri: str) -> str | None:
    """`mlartifacts/` beside a SQLite database; None lets a server (or file store) decide."""
    db = sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None


def unreachable_reason(uri: str, timeout_s: float = 5.0) -> str | None:
    """Why an http(s) tracking server cannot be reached, or None. Checked once up front, because
    MLflow's own client retries with back-off for minutes before giving up."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None  # something answered; MLflow errors, if any, are handled per call
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


# MLflow's defaults (a 120 s timeout, 7 retries with back-off: ~4 minutes per call) suit a client
# that must not lose a call; ganzoo retries in its background worker instead, so each call may give
# up sooner and the worker notices a vanished server (and its return) within a minute.
HTTP_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def tune_http_client(uri: str) -> None:
    """Shorter MLflow HTTP timeouts and retries for an http(s) store, unless the user set them."""
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)


def open_client(uri: str, experiment: str):
    """(MlflowClient, experiment_id), creating the experiment if needed. For SQLite, a file lock
    beside the database serialises this first contact: two processes that both find a fresh
    database otherwise run MLflow's schema migrations at once and one of them fails."""
    db = sqlite_path(uri)
    if db is None:
        return _open_client(uri, experiment)
    from filelock import FileLock  # torch's own dependency

    # The lock file lives in the (git-ignored) artifact folder beside the database.
    lock = db.resolve().parent / "mlartifacts" / f".{db.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock), timeout=300):
        return _open_client(uri, experiment)


def _open_client(uri: str, experiment: str):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=artifact_location(uri),
                                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            return client, experiment_id
        except MlflowException:  # another process created it between our two calls
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    if EXPERIMENT_KIND_TAG not in found.tags:  # made before ganzoo set it, or by someone else
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return client, found.experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def context_tags() -> dict[str, str]:
    """The tags MLflow's own `mlflow.start_run` sets (mlflow.user, mlflow.source.name/type, the
    git commit of the entry script when it is in a repository...): ganzoo creates its runs with
    the client, which sets none of them."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return {k: str(v) for k, v in resolve_tags().items()}
    except Exception:  # noqa: BLE001 -- a context provider failing must not cost the run its other tags
        return {}


def run_tags(cfg: Config, ctx: RunContext | None = None) -> dict[str, str]:
    """Tags every ganzoo run carries: MLflow's context tags, the git commit of the working
    directory (the project, wherever the entry script lives), the run's variant and data, and
    what DVC and a flow say about it. DVC sets `DVC_STAGE` (the stage's name) for every stage
    command it runs, `DVC_EXP_NAME` and `DVC_EXP_BASELINE_REV` under `dvc exp run`. ctx: the
    flow's context (`ganzoo.tracking.context`), read on the caller's thread when omitted."""
    tags = context_tags()
    tags.update({"ganzoo.variant": cfg.variant, "ganzoo.dataset": cfg.data.source,
                 "ganzoo.image_size": str(cfg.data.image_size)})
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    for env, tag in (("DVC_STAGE", "dvc.stage"), ("DVC_EXP_NAME", "dvc.exp_name"),
                     ("DVC_EXP_BASELINE_REV", "dvc.exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    ctx = ctx or current()
    tags.update(ctx.tags)
    if ctx.parent_run_id:
        tags["mlflow.parentRunId"] = ctx.parent_run_id
    return tags


def run_name(cfg: Config, ctx: RunContext | None = None) -> str:
    """A flow's name for the run, else the DVC experiment's, else variant, data and a short id."""
    given = (ctx or current()).name or os.environ.get("DVC_EXP_NAME")
    if given:
        return given
    return f"{cfg.variant}-{cfg.data.source}-{cfg.data.image_size}-{secrets.token_hex(3)}"


# The MLflow 3 UI opens an experiment with this tag in its model-training view (the values are
# the UI's ExperimentKind enum: custom_model_development, genai_development, ...).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _not_a_param(key: str) -> bool:
    """Where files go, and how the run is logged, say nothing about the model: paths (folders,
    the store, a weights file) and tracking/progress settings stay in config.yaml only."""
    return (key.startswith("tracking.") or key in ("train.progress", "data.download")
            or key.endswith(("_dir", ".root", ".uri", ".inception_weights")))


def run_params(cfg: Config) -> dict[str, str]:
    """The params worth a column in the MLflow UI: the resolved config flattened, without nulls,
    paths and logging settings, and with only this variant's `model.<variant>` section. The full
    resolved config is the run's `config.yaml` artifact (Tracker), so nothing is lost."""
    own = f"model.{cfg.variant}."
    return {k: str(v) for k, v in flatten(cfg.model_dump(mode="json")).items()
            if v is not None and not _not_a_param(k) and (not k.startswith("model.") or k.startswith(own))}


# Numbers in metrics.json that describe the evaluation rather than score the model.
EVAL_SETTINGS = ("step", "n_samples", "eval_seed", "feature_dim")


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """The scores in an evaluation's metrics, flattened (strings and bools, like `primary_metric`,
    and the settings above are descriptions, not scores)."""
    return {k: float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in EVAL_SETTINGS}


# --------------------------------------------------------------------------- sidecar

def read_sidecar(checkpoint_dir: str | Path) -> dict | None:
    path = Path(checkpoint_dir) / SIDECAR  # beside the checkpoint
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("run_id") else None


def write_sidecar(checkpoint_dir: str | Path, data: dict) -> None:
    """The sidecar (`RunPaths.sidecar`): which run in which store trained the checkpoint beside it."""
    atomic_write_text(Path(checkpoint_dir) / SIDECAR, json.dumps(data, indent=2) + "\n")


def checkpoint_stamp(path: str | Path) -> list[int] | None:
    """(size, mtime_ns) of a checkpoint file: tells whether the sidecar was written for this very
    file, and not for one that a later untracked training (`--no-track`) replaced."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def sidecar_run(client, uri: str, checkpoint: str | Path) -> tuple[str | None, dict | None]:
    """The run that wrote `checkpoint`, per the sidecar beside it, when that run is in this store
    and the file is the one the sidecar describes; else (None, sidecar)."""
    from mlflow.exceptions import MlflowException

    side = read_sidecar(Path(checkpoint).parent)
    if side is None or side.get("tracking_uri") != uri:
        return None, side
    stamp = checkpoint_stamp(checkpoint)
    if stamp is None or stamp not in (side.get("checkpoint"), side.get("best")):  # last.pt or best.pt
        return None, side
    try:
        run = client.get_run(side["run_id"])
    except MlflowException:  # the store was wiped or the run deleted
        return None, side
    if run.info.lifecycle_stage != "active":
        return None, side
    return run.info.run_id, side


UI_DEFAULT = "http://127.0.0.1:5000"  # where `mlflow ui` serves a database store by default


def run_link(uri: str, experiment_id, run_id: str) -> dict[str, str | None]:
    """Where to see a run: its web page on an http(s) server; for a database or file store, the
    page `mlflow ui` serves by default and the command that starts it on this store."""
    web = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if web else UI_DEFAULT
    return {"run_id": run_id, "experiment_id": str(experiment_id), "tracking_uri": uri,
            "url": f"{base}/#/experiments/{experiment_id}/runs/{run_id}",
            "ui_command": None if web else f"mlflow ui --backend-store-uri {uri}"}


def trained_run(checkpoint: str | Path) -> dict[str, str | None] | None:
    """The MLflow run that wrote `checkpoint` (per the sidecar beside it, when the sidecar describes
    this very file), as run_link() gives it; None when the training was not tracked."""
    side = read_sidecar(Path(checkpoint).parent)
    if side is None or side.get("experiment_id") is None or not side.get("tracking_uri"):
        return None
    if checkpoint_stamp(checkpoint) not in (side.get("checkpoint"), side.get("best")):
        return None  # an older run's sidecar beside a checkpoint an untracked run replaced
    return run_link(side["tracking_uri"], side["experiment_id"], side["run_id"])


def require_reachable(uri: str) -> None:
    why = unreachable_reason(uri)
    if why is not None:
        raise ConfigError(f"MLflow tracking server {uri} is unreachable ({why}); start it or set "
                          f"tracking.uri / MLFLOW_TRACKING_URI to a reachable store")

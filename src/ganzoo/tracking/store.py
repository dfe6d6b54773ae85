"""Where runs go: the tracking URI, the experiment, and the sidecar that ties a checkpoint to its run.

URI: `tracking.uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the working
directory, whose artifacts go to `mlartifacts/` beside the database (set on the experiment when
it is created, so runs never scatter artifacts under whatever folder a later process runs in).

The sidecar `mlflow_run.json` beside a checkpoint (`checkpoints/<variant>/`) records the run that
trained it and the store it lives in; `evaluate` and `register` read it to log into that run.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ganzoo.config import Config, flatten
from ganzoo.errors import ConfigError
from ganzoo.files import atomic_write_text
from ganzoo.paths import SIDECAR

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


def canonical_uri(uri: str) -> str:
    """Same store, same string: relative SQLite paths made absolute."""
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri.rstrip("/")


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
    if found is not None:
        return client, found.experiment_id
    try:
        return client, client.create_experiment(experiment, artifact_location=artifact_location(uri))
    except MlflowException:  # another process created it between our two calls
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return client, found.experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run_tags(cfg: Config) -> dict[str, str]:
    """Tags every ganzoo run carries. DVC sets `DVC_STAGE` (the stage's name) for every stage
    command it runs, and `DVC_EXP_NAME` under `dvc exp run`; outside DVC there is no such tag."""
    tags = {"ganzoo.variant": cfg.variant, "ganzoo.dataset": cfg.data.source,
            "ganzoo.image_size": str(cfg.data.image_size)}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    for env, tag in (("DVC_STAGE", "dvc.stage"), ("DVC_EXP_NAME", "dvc.exp_name")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def run_name(cfg: Config) -> str:
    return f"{cfg.variant}-{cfg.data.source}-{cfg.data.image_size}"


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


def require_reachable(uri: str) -> None:
    why = unreachable_reason(uri)
    if why is not None:
        raise ConfigError(f"MLflow tracking server {uri} is unreachable ({why}); start it or set "
                          f"tracking.uri / MLFLOW_TRACKING_URI to a reachable store")

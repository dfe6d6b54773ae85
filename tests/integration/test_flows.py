"""The Prefect flows end to end on tiny params, against Prefect's test server.

One temporary server (prefect_test_harness) serves the whole module; every test runs in its own
empty folder holding only a tiny params.yaml, so data/, checkpoints/, eval/ and mlflow.db land
in tmp.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ganzoo import stages
from ganzoo.errors import ConfigError, DataError
from tests.helpers import write_params

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: tmp_path_factory.mktemp("prefect-home")}):
        with prefect_test_harness(server_startup_timeout=90):
            yield


@pytest.fixture
def project(prefect_server, tmp_path, monkeypatch):
    """An empty project folder with a tiny params.yaml, as the working directory."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    return tmp_path


def counting(monkeypatch, name: str, fail_first_with: BaseException | None = None) -> list:
    """Wrap stages.<name> so the test sees every call (and can make the first one fail)."""
    calls: list = []
    real = getattr(stages, name)

    def wrapper(*args, **kwargs):
        calls.append(kwargs)
        if fail_first_with is not None and len(calls) == 1:
            raise fail_first_with
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, name, wrapper)
    return calls


def artifact(key: str):
    """The newest artifact with this key (the module's tests share one server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, f"no artifact {key!r}"
    return found[0]


# --------------------------------------------------------------------------- pure policy

def test_transient_errors_are_retried_and_user_errors_are_not():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    from flows.pipeline import is_transient

    assert is_transient(OSError("disk hiccup"))
    assert is_transient(ConnectionRefusedError("tracking server down"))
    assert is_transient(TimeoutError())
    assert is_transient(MlflowException("503", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_transient(MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(ConfigError("train.lr = -1 is invalid"))
    assert not is_transient(DataError("no images in folder"))
    assert not is_transient(FileNotFoundError("params.yaml"))
    assert not is_transient(RuntimeError("a bug"))


# --------------------------------------------------------------------------- pipeline flow

@pytest.mark.slow
def test_pipeline_runs_every_stage_and_publishes_artifacts(project):
    """prepare -> train -> evaluate -> register with MLflow on sqlite in tmp."""
    import json

    from flows.pipeline import pipeline

    result = pipeline(params="params.yaml", overrides=["tracking.enabled=true",
                                                       f"tracking.uri=sqlite:///{project / 'mlflow.db'}"],
                      retry_delay_s=0)

    assert Path(result["checkpoint"]).is_file()
    written = json.loads((project / "eval" / "dcgan" / "metrics.json").read_text())
    assert result["metrics"] == written  # the flow returns exactly what the stage wrote
    assert "dcgan" in result["registry"]["message"]
    assert (project / "mlflow.db").is_file()

    report = artifact("ganzoo-dcgan-report")
    first_metric = next(iter(written))
    assert re.search(rf"\| {re.escape(first_metric)}", report.data)
    run = json.loads((project / "checkpoints" / "dcgan" / "mlflow_run.json").read_text())
    assert run["run_id"] in report.data  # the MLflow run link
    assert result["registry"]["message"] in report.data
    sheets = artifact("ganzoo-dcgan-samples")
    assert "data:image/png;base64," in sheets.data


def same(a, b) -> bool:
    """Deep equality for checkpoint payloads (tensors compared by value)."""
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    return a == b


@pytest.mark.slow
def test_flow_and_dvc_commands_write_the_same_files(project, tmp_path_factory, monkeypatch):
    """The flow adds no logic: dvc.yaml's commands, run in another folder, give the same files."""
    import hashlib

    import torch

    from flows.pipeline import pipeline
    from ganzoo.cli import main as ganzoo

    pipeline(params="params.yaml", register_model=False, retry_delay_s=0)
    by_cli = tmp_path_factory.mktemp("by-cli")
    write_params(by_cli)
    monkeypatch.chdir(by_cli)
    for command in (["prepare"], ["classifier"], ["train", "--resume", "auto"], ["evaluate"]):
        assert ganzoo(command) == 0, command

    def digests(root: Path) -> dict:
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                for d in ("data", "metrics", "eval") for f in sorted((root / d).rglob("*")) if f.is_file()}

    assert digests(project) == digests(by_cli)  # data, classifier, losses, metrics, sheets: byte for byte
    flow_ckpt, cli_ckpt = (torch.load(root / "checkpoints" / "dcgan" / "last.pt", weights_only=True)
                           for root in (project, by_cli))
    # Python's global `random` state is saved for resuming but never drawn by training; in a flow,
    # Prefect's own threads draw from it (names, jitter), so only that entry may differ.
    for ckpt in (flow_ckpt, cli_ckpt):
        ckpt["rng"].pop("python")
    assert same(flow_ckpt, cli_ckpt)


@pytest.mark.slow
def test_a_transient_failure_is_retried_and_the_flow_completes(project, monkeypatch):
    from flows.pipeline import pipeline

    calls = counting(monkeypatch, "train", fail_first_with=OSError("disk hiccup"))
    result = pipeline(params="params.yaml", register_model=False, resume="no", retry_delay_s=0)

    assert len(calls) == 2
    assert [c["resume"] for c in calls] == ["no", "auto"]  # the retry continues what attempt 1 wrote
    assert Path(result["checkpoint"]).is_file()
    assert result["registry"] is None


def test_a_bad_params_key_fails_at_once_without_retries(project, monkeypatch):
    from flows.pipeline import pipeline

    prepared = counting(monkeypatch, "prepare")
    with pytest.raises(ConfigError, match="nfg"):
        pipeline(params="params.yaml", overrides=["model.dcgan.nfg=8"], retry_delay_s=0)
    assert prepared == []  # the config task failed before any stage ran


def test_a_user_error_inside_a_stage_is_not_retried(project, monkeypatch):
    from flows.pipeline import pipeline

    prepared = counting(monkeypatch, "prepare")
    with pytest.raises(DataError, match="batch_size"):
        pipeline(params="params.yaml", overrides=["train.batch_size=500"], retry_delay_s=0)
    assert len(prepared) == 1  # the task ran once: DataError is not worth a retry


def test_the_command_line_takes_the_cli_arguments(project, capsys):
    from flows.pipeline import main

    assert main(["--params", "params.yaml", "--set", "model.dcgan.nfg=8"]) == 2
    assert "ganzoo: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--set"])  # argparse: --set needs KEY=VALUE


# --------------------------------------------------------------------------- sweep flow

@pytest.mark.slow
def test_sweep_compares_variants_in_one_table(project):
    from flows.sweep import sweep

    rows = sweep(variants=["gan", "dcgan"], params="params.yaml", register_model=False,
                 max_parallel=2, retry_delay_s=0)

    assert [r["variant"] for r in rows] == ["gan", "dcgan"]
    assert all(r["status"] == "ok" for r in rows)
    assert set(rows[0]) == set(rows[1])  # same columns
    for name in ("gan", "dcgan"):
        assert (project / "checkpoints" / name / "last.pt").is_file()
    table = artifact("ganzoo-sweep-comparison")
    assert "dcgan" in table.data and "not registered" in table.data


@pytest.mark.slow
def test_a_failing_variant_leaves_the_others_and_fails_the_sweep_at_the_end(project, monkeypatch):
    from flows.sweep import SweepError, sweep

    real_train = stages.train

    def train(cfg, *args, **kwargs):
        if cfg.variant == "gan":
            raise ConfigError("model.gan: broken on purpose")
        return real_train(cfg, *args, **kwargs)

    monkeypatch.setattr(stages, "train", train)
    with pytest.raises(SweepError, match="gan: ConfigError: model.gan: broken on purpose"):
        sweep(variants=["gan", "dcgan"], params="params.yaml", register_model=False, retry_delay_s=0)
    assert (project / "eval" / "dcgan" / "metrics.json").is_file()  # dcgan still ran to the end
    table = artifact("ganzoo-sweep-comparison").data
    assert "failed" in table and "broken on purpose" in table


def test_sweep_rejects_an_unknown_variant_before_any_work(project, monkeypatch):
    from flows.sweep import sweep

    prepared = counting(monkeypatch, "prepare")
    with pytest.raises(ConfigError, match="dcgann"):
        sweep(variants=["dcgan", "dcgann"], params="params.yaml", retry_delay_s=0)
    assert prepared == []


# --------------------------------------------------------------------------- deployment files

def test_prefect_yaml_deploys_the_pipeline_flow_with_a_gpu():
    from flows.deploy import pool_spec
    from flows.pipeline import pipeline

    spec = pool_spec("gpu", REPO / "prefect.yaml")
    path, _, name = spec["entrypoint"].partition(":")
    assert (REPO / path).is_file() and name == pipeline.fn.__name__
    pipeline.validate_parameters(spec["parameters"])  # names and types match the flow
    job = spec["work_pool"]["job_variables"]
    request = job["container_create_kwargs"]["device_requests"][0]
    assert request["capabilities"] == [["gpu"]]
    for volume in job["volumes"]:
        assert volume.split(":")[1].startswith("/home/ganzoo/app/")


def test_dockerfile_refers_only_to_what_the_repo_has():
    text = (REPO / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                if not source.startswith("--") and source != ".":
                    assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^RUN make install$", text, re.M)
    assert re.search(r"^install:", (REPO / "Makefile").read_text(), re.M)
    cmd = re.search(r'^CMD \["python", "-m", "([\w.]+)"\]', text, re.M).group(1)
    assert (REPO / (cmd.replace(".", "/") + ".py")).is_file()
    ignored = (REPO / ".dockerignore").read_text().split()
    for must_stay_out in (".venv", "data", "checkpoints", "mlruns", "mlflow.db", ".dvc/cache"):
        assert must_stay_out in ignored

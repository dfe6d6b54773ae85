"""The Prefect flows end to end on tiny params, against Prefect's test server.

One temporary server (prefect_test_harness) serves the whole module; every test runs in its own
empty folder holding only a tiny params.yaml, so data/, checkpoints/, eval/ and mlflow.db land
in tmp.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

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
    # The MLflow run is named after the flow run, and says which flow run it was.
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").get_run(run["run_id"]).data.tags
    assert re.fullmatch(r"dcgan-digits-\d{8}-\d{6}", tags["mlflow.runName"]), tags["mlflow.runName"]
    assert tags["prefect.flow_run_name"] == tags["mlflow.runName"] and tags["prefect.flow_run_id"]


def flow_logs(flow_run_id) -> list[str]:
    """The messages a flow run (and its tasks) sent to the server, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs travel in batches
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                sort=LogSort.TIMESTAMP_ASC, limit=200)
    return [log.message for log in logs]


@pytest.mark.slow
def test_a_run_talks_in_its_log_and_artifacts(project):
    """What each stage says, the training's progress, the sheets as images, a run name that says
    what ran, the resolved data source in the report's title."""
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    state = pipeline(params="params.yaml", register_model=False, resume="no", retry_delay_s=0, return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(run_id).name
    assert re.fullmatch(r"dcgan-digits-\d{8}-\d{6}", name), name
    logs = "\n".join(flow_logs(run_id))
    for said in (r"prepared 96 digits images of shape \(1, 16, 16\)",  # data size
                 r"evaluation classifier .*: held-out accuracy \d\.\d{4}",  # classifier accuracy
                 r"training dcgan from scratch to step 4",  # resume decision
                 r"step [24]/4  loss_d=\d+\.\d{4}  loss_g=\d+\.\d{4}  [\d,]+ images/s",  # losses, speed
                 r"trained dcgan to step 4 \(from scratch\)",
                 r"evaluated dcgan at step 4: fid_classifier "):
        assert re.search(said, logs), f"{said!r} not in the run log:\n{logs}"

    assert artifact("ganzoo-dcgan-training").data == 100.0  # the progress artifact, at the end
    sheet = artifact("ganzoo-dcgan-sheet-samples")
    assert sheet.type == "image" and sheet.data.startswith("data:image/png;base64,")
    assert artifact("ganzoo-dcgan-report").data.startswith("# ganzoo dcgan on digits (16px)")  # not "on auto"


def test_run_names_say_what_runs(project):
    from datetime import datetime

    from flows.runlog import pipeline_name

    when = datetime(2025, 1, 1, 3, 15)
    assert pipeline_name("params.yaml", [], when) == "dcgan-digits-20250101-031500"
    assert pipeline_name("params.yaml", ["variant=pix2pix"], when) == "pix2pix-digits_paired-20250101-031500"
    assert pipeline_name("params.yaml", ["variant=nope"], when) == "ganzoo-20250101-031500"  # the config task says why


def test_training_log_throttles_and_survives_a_failing_artifact(monkeypatch):
    import prefect.artifacts

    from flows.runlog import TrainingLog
    from ganzoo.config import load_config

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, msg):
            self.lines.append(("info", msg))

        def warning(self, msg):
            self.lines.append(("warning", msg))

    def down(*args, **kwargs):
        raise ConnectionError("server gone")

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", down)
    now = [0.0]
    log = Log()
    hook = TrainingLog("ganzoo-dcgan-training", log, every_s=10, clock=lambda: now[0])
    hook.on_start(load_config(None, ["train.steps=100"]), None, 20)
    for step in range(30, 101, 10):
        now[0] += 4
        hook.on_log(step, {"loss_d": 0.5}, 100.0)
    hook.on_end(100, "checkpoints/dcgan/last.pt")
    messages = [m for _, m in log.lines]
    assert messages[0].startswith("training dcgan resuming at step 20 to step 100")
    assert [m.split()[1] for m in messages if m.startswith("step ")] == ["30/100", "60/100", "90/100"]
    assert [kind for kind, _ in log.lines].count("warning") == 1  # said once; training went on
    assert messages[-1] == "reached step 100: checkpoints/dcgan/last.pt"


def test_prefect_telemetry_is_off_unless_asked_for():
    import os
    import subprocess
    import sys

    code = ("import flows, os; from prefect._internal.analytics.enabled import is_telemetry_enabled; "
            "print(os.environ['DO_NOT_TRACK'], os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'], is_telemetry_enabled())")
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])

    def shown(**extra):
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True, cwd=REPO).stdout.split()

    assert shown() == ["1", "false", "False"]
    assert shown(DO_NOT_TRACK="0", PREFECT_SERVER_ANALYTICS_ENABLED="true")[:2] == ["0", "true"]  # the user's choice


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

    uri = f"sqlite:///{project / 'mlflow.db'}"
    rows = sweep(variants=["gan", "dcgan"], params="params.yaml", register_model=False,
                 overrides=["tracking.enabled=true", f"tracking.uri={uri}"], max_parallel=2, retry_delay_s=0)

    assert [r["variant"] for r in rows] == ["gan", "dcgan"]
    assert all(r["status"] == "ok" for r in rows)
    assert set(rows[0]) == set(rows[1])  # same columns
    for name in ("gan", "dcgan"):
        assert (project / "checkpoints" / name / "last.pt").is_file()
    table = artifact("ganzoo-sweep-comparison")
    assert "dcgan" in table.data and "not registered" in table.data

    # In MLflow: one parent run for the sweep, one child per variant under it.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ganzoo").experiment_id])
    parents = [r for r in runs if r.data.tags.get("ganzoo.stage") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.info.run_name.startswith("sweep-gan-dcgan-")
    children = {r.data.tags["ganzoo.variant"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert set(children) == {"gan", "dcgan"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    assert children["dcgan"].info.run_name == f"{parent.info.run_name}/dcgan"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["comparison.json"]


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


def test_prefect_yaml_has_a_local_deployment_and_runs_each_one_at_a_time():
    from flows.deploy import pool_spec
    from flows.pipeline import pipeline

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert spec.get("pull") is None  # each deployment says where its runs start: no shared /home/ganzoo/app
    local = pool_spec("local", REPO / "prefect.yaml")
    pipeline.validate_parameters(local["parameters"])
    assert "image" not in local["work_pool"].get("job_variables", {})
    [step] = local["pull"]
    assert step == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}
    for dep in spec["deployments"]:
        assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}, dep["name"]
        assert dep["work_pool"]["job_variables"]["env"]["DO_NOT_TRACK"] == "1", dep["name"]

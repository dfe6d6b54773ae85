"""MLflow end to end on tiny params: tracking of training and evaluation, the registry's champion
gating, pyfunc models for an unconditional, a conditional and a translation variant, two processes
on one SQLite store, an unreachable server, and `mlflow models serve` answering over REST.

One project folder (own SQLite store) is trained, evaluated and registered once per module."""

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from ganzoo import stages
from ganzoo.config import load_config
from ganzoo.tracking import store
from ganzoo.training.checkpoint import read_checkpoint
from ganzoo.variants import registry as variants

TINY_DCGAN = ["model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8"]
BASE = ["data.source=digits", "data.image_size=16", "train.steps=6", "train.log_every=2", "train.batch_size=16",
        "train.checkpoint_every=3", "train.progress=false", "tracking.log_every=2", "tracking.image_every=3",
        "eval.n_samples=64", "eval.batch_size=64", "eval.classifier_steps=20", "eval.kid_subset_size=32",
        "monitor.eval_every=2", "monitor.n_probe=32", *TINY_DCGAN]
NAME = "ganzoo-dcgan-digits"


def client_for(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def sidecar(root: Path, out_dir: str = "checkpoints", variant: str = "dcgan") -> dict:
    return json.loads((root / out_dir / variant / "mlflow_run.json").read_text())


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare -> train (tracked) -> evaluate (tracked) in a fresh folder with its own store."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow_project").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        cfg = load_config(None, BASE)
        stages.prepare(cfg)
        result = stages.train(cfg)
        metrics = stages.evaluate(cfg)
        yield SimpleNamespace(root=root, cfg=cfg, result=result, metrics=metrics, client=client_for(root))
    mlflow.set_tracking_uri(None)  # the registry set it process-wide; leave no trace for other tests


@pytest.fixture(scope="module")
def registered(project):
    """The evaluated model registered, then a worse and a better one (hand-written metrics)."""
    from ganzoo.tracking.registry import register_checkpoint

    first = stages.register(project.cfg)
    fid = project.metrics["fid_classifier"]
    # Other files (an identical checkpoint adds no version). Hand-written intervals, tight around
    # the hand-written values (the champion has its own).
    worse = register_checkpoint(project.cfg, copy_checkpoint(project, "worse"), {
        **project.metrics, "fid_classifier": fid + 100, "fid_classifier_ci_low": fid + 99,
        "fid_classifier_ci_high": fid + 101})
    better = register_checkpoint(project.cfg, copy_checkpoint(project, "better"), {
        **project.metrics, "fid_classifier": fid / 100, "fid_classifier_ci_low": fid / 101,
        "fid_classifier_ci_high": fid / 99})
    return SimpleNamespace(first=first, worse=worse, better=better)


def copy_checkpoint(project, note: str) -> Path:
    """The trained model in a file with other bytes, as another training's checkpoint would be."""
    ckpt = torch.load(project.result.checkpoint, map_location="cpu", weights_only=True)
    ckpt["test_note"] = note
    torch.save(ckpt, project.root / f"{note}.pt")
    return project.root / f"{note}.pt"


# --------------------------------------------------------------------------- tracking

@pytest.mark.slow
def test_training_run_holds_params_tags_losses_images_and_checkpoint(project):
    client, side = project.client, sidecar(project.root)
    run = client.get_run(side["run_id"])
    assert run.info.status == "FINISHED"
    resolved = variants.resolve(project.cfg)
    assert run.data.params == store.run_params(resolved)  # the meaningful ones; config.yaml has them all
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert run.data.tags["ganzoo.variant"] == "dcgan" and run.data.tags["ganzoo.dataset"] == "digits"
    for loss in ("loss_d", "loss_g", "images_per_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, loss)] == [2, 4, 6]
    history = [m.value for m in client.get_metric_history(run.info.run_id, "loss_d")]
    assert history == pytest.approx([row["loss_d"] for row in project.result.history], rel=1e-6)
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")
              if a.path.endswith(".png") and a.path.startswith("images/samples")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == [4, 6]  # crossed 3, then 6
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/last.pt"]
    assert side["step"] == 6


@pytest.mark.slow
def test_the_monitor_logs_health_by_step_the_probe_sheets_and_their_evolution(project):
    client, run_id = project.client, sidecar(project.root)["run_id"]
    for name in ("health/probe_coverage", "health/probe_entropy", "health/probe_fid_classifier"):
        assert [m.step for m in client.get_metric_history(run_id, name)] == [2, 4, 6]
    probes = [a.path for a in client.list_artifacts(run_id, "images")
              if a.path.startswith("images/probe") and a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in probes) == [2, 4, 6]
    assert sorted(a.path for a in client.list_artifacts(run_id, "monitor")) == [
        "monitor/probe_evolution.gif", "monitor/probe_fingerprint.json"]
    # the probe's numbers say what made them: the same fingerprint as the checkpoint's monitor record
    saved = read_checkpoint(project.result.checkpoint)["monitor"]["fingerprint"]
    assert client.get_run(run_id).data.tags["fingerprint_probe"] == saved["hash"]
    assert project.result.best is not None and project.result.best.exists()


@pytest.mark.slow
def test_evaluation_logs_metrics_and_sheets_into_the_training_run(project):
    run_id = sidecar(project.root)["run_id"]
    client = project.client
    run = client.get_run(run_id)
    assert run.data.metrics["eval/fid_classifier"] == pytest.approx(project.metrics["fid_classifier"])
    assert [m.step for m in client.get_metric_history(run_id, "eval/fid_classifier")] == [6]
    assert run.data.tags["eval.primary_metric"] == "fid_classifier"
    sheets = [a.path for a in client.list_artifacts(run_id, "eval/sheets")]
    assert "eval/sheets/samples.png" in sheets
    experiment = client.get_experiment(run.info.experiment_id)
    assert len(client.search_runs([experiment.experiment_id])) == 1  # no separate evaluation run


@pytest.mark.slow
def test_resumed_training_continues_its_run(project, monkeypatch):
    monkeypatch.chdir(project.root)
    first = stages.train(load_config(None, [*BASE, "train.steps=4", "train.out_dir=resume_ck"]))
    run_id = sidecar(project.root, "resume_ck")["run_id"]
    stages.train(load_config(None, [*BASE, "train.steps=6", "train.out_dir=resume_ck"]), resume="yes")
    assert first.steps == 4 and sidecar(project.root, "resume_ck")["run_id"] == run_id
    run = project.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in project.client.get_metric_history(run_id, "loss_g")] == [2, 4, 6]
    assert run.data.tags["ganzoo.resumed_from_step"] == "4"
    assert run.data.tags["ganzoo.resumed.train.steps"] == "6" and run.data.params["train.steps"] == "4"


@pytest.mark.slow
def test_unreachable_server_warns_once_and_training_still_writes_its_files(in_tmp, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = load_config(None, [*BASE, f"tracking.uri=http://127.0.0.1:{free_port()}"])
    stages.prepare(cfg)
    result = stages.train(cfg)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("[ganzoo] MLflow:")]
    assert len(warnings) == 1 and "unreachable" in warnings[0]
    assert result.checkpoint.is_file() and (in_tmp / "metrics" / "dcgan" / "losses.csv").is_file()
    assert not (in_tmp / "checkpoints" / "dcgan" / "mlflow_run.json").exists()


# --------------------------------------------------------------------------- registry

@pytest.mark.slow
def test_champion_moves_only_to_a_better_model(project, registered):
    client = project.client
    assert registered.first["alias"] == "champion" and registered.first["version"] == 1
    assert "there was no champion" in registered.first["message"]
    assert registered.worse["alias"] == "challenger" and "does not beat champion v1" in registered.worse["message"]
    assert registered.better["alias"] == "champion" and "beats champion v1" in registered.better["message"]
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 3
    assert int(client.get_model_version_by_alias(NAME, "challenger").version) == 2
    tags = client.get_model_version(NAME, "3").tags
    assert tags["ganzoo.primary_metric"] == "fid_classifier"
    assert float(tags["ganzoo.primary_value"]) == pytest.approx(project.metrics["fid_classifier"] / 100)
    assert tags["ganzoo.decision"] == "champion"
    assert tags["ganzoo.fingerprint"] == project.metrics["fingerprint_classifier"]
    assert client.get_model_version(NAME, "2").tags["ganzoo.decision"] == "challenger"
    # The models hang off the run that trained the checkpoint.
    assert client.get_model_version(NAME, "1").run_id == sidecar(project.root)["run_id"]


@pytest.mark.slow
def test_stale_metrics_are_refused(project, registered):
    from ganzoo.errors import ConfigError
    from ganzoo.tracking.registry import register_checkpoint

    with pytest.raises(ConfigError, match="ganzoo evaluate"):
        register_checkpoint(project.cfg, project.result.checkpoint, {**project.metrics, "step": 999})


@pytest.mark.slow
def test_sample_accepts_a_registry_uri(project, registered, monkeypatch):
    from ganzoo.cli import main

    monkeypatch.chdir(project.root)
    assert main(["sample", f"models:/{NAME}@champion", "--n", "4", "--out", "from_registry.npz"]) == 0
    assert np.load(project.root / "from_registry.npz")["images"].shape == (4, 16, 16, 1)


# --------------------------------------------------------------------------- pyfunc models

def _trained_checkpoint(variant: str, source: str, extra: list[str]) -> Path:
    """Two tracked training steps of a tiny `variant` in the current folder."""
    cfg = load_config(None, [*BASE, f"variant={variant}", f"data.source={source}", "train.steps=2",
                             f"train.out_dir=pyfunc_{variant}", *extra])
    stages.prepare(cfg)
    return stages.train(cfg).checkpoint


CASES = {  # variant: (data source, tiny overrides, request, request index of each returned image)
    "cgan": ("digits", ["model.cgan.ngf=8", "model.cgan.ndf=8", "model.cgan.z_dim=8", "model.cgan.embed_dim=4"],
             pd.DataFrame({"n": [2, 1], "seed": [0, 0], "label": [3, 9]}), [0, 0, 1]),
    "pix2pix": ("digits_paired", ["model.pix2pix.ngf=8", "model.pix2pix.ndf=8", "model.pix2pix.n_layers=2"],
                None, [0, 1]),
}


@pytest.mark.slow
def test_registered_unconditional_model_loads_and_predicts(project, registered):
    import mlflow

    from ganzoo.tracking.pyfunc import load_variant_from_uri

    uri = f"models:/{NAME}@champion"
    mlflow.set_tracking_uri(f"sqlite:///{project.root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.metadata["request_columns"] == ["n", "seed"]
    assert model.metadata.get_input_schema() is None  # ganzoo checks the columns itself (pyfunc docstring)
    out = model.predict(pd.DataFrame({"n": [2, 3], "seed": [0, 1]}))
    assert out["request"].tolist() == [0, 0, 1, 1, 1]
    assert all(decode(b).shape == (16, 16) for b in out["image"])
    assert load_variant_from_uri(uri).name == "dcgan"


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(CASES))
def test_conditional_and_translation_models_load_and_predict(project, monkeypatch, variant):
    import mlflow

    from ganzoo.tracking.pyfunc import encode_png, load_variant_from_uri, log_generator
    from ganzoo.training.checkpoint import load_variant

    monkeypatch.chdir(project.root)
    source, extra, request, expected_rows = CASES[variant]
    ckpt = _trained_checkpoint(variant, source, extra)
    trained, _, _ = load_variant(ckpt)
    # Its training was tracked too: the final sheet (samples per class / input, output, target rows).
    sheets = project.client.list_artifacts(sidecar(project.root, f"pyfunc_{variant}", variant)["run_id"], "images")
    assert any(a.path.endswith(".png") for a in sheets)
    if request is None:  # translation: base64 PNG inputs
        image = encode_png(torch.zeros(trained.data.image_shape))
        request = pd.DataFrame({"image": [image, image], "direction": ["AtoB", "AtoB"]})
    mlflow.set_tracking_uri(f"sqlite:///{project.root / 'mlflow.db'}")
    with mlflow.start_run(experiment_id=project.client.get_experiment_by_name("ganzoo").experiment_id):
        info = log_generator(trained, ckpt)
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert set(model.metadata.metadata["request_columns"]) >= set(request.columns)
    out = model.predict(request)
    assert out["request"].tolist() == expected_rows
    c, h, w = (trained.data.image_shape_b if trained.translates else None) or trained.data.image_shape
    assert all(decode(b).shape == ((h, w) if c == 1 else (h, w, c)) for b in out["image"])
    assert type(load_variant_from_uri(info.model_uri)) is type(trained)


# --------------------------------------------------------------------------- concurrency

WORKER = textwrap.dedent("""
    import sys
    from ganzoo import stages
    from ganzoo.config import load_config
    overrides = sys.argv[2:] + ["train.out_dir=" + sys.argv[1], "train.metrics_dir=m_" + sys.argv[1]]
    stages.train(load_config(None, overrides))
""")


@pytest.mark.slow
def test_two_processes_on_one_fresh_sqlite_store_lose_nothing(project, tmp_path):
    """Both start on a database that does not exist yet (schema creation races too)."""
    overrides = [*BASE, "train.steps=12", "train.log_every=1", "tracking.log_every=1", "tracking.image_every=4",
                 "train.threads=1", f"data.prepared_dir={project.root / 'data' / 'prepared'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'shared.db'}"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, name, *overrides], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert not any("[ganzoo] MLflow:" in log for log in logs), logs

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("ganzoo").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        for loss in ("loss_d", "loss_g", "images_per_s"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, loss)] == list(range(1, 13))
        pngs = [a for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
        assert len([a for a in pngs if a.path.startswith("images/samples")]) == 3
        assert len([a for a in pngs if a.path.startswith("images/probe")]) == 6  # the monitor, every 2 steps
    assert runs[0].data.params.keys() == runs[1].data.params.keys()
    configs = [yaml.safe_load((Path(r.info.artifact_uri.removeprefix("file://")) / "config.yaml").read_text())
               for r in runs]
    assert {c["train"]["out_dir"] for c in configs} == {"a", "b"}  # paths: in config.yaml, not params


# --------------------------------------------------------------------------- serving

@pytest.mark.slow
def test_mlflow_serves_the_champion_over_rest(project, registered):
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # uvicorn and mlflow live beside this interpreter
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project.root / 'mlflow.db'}",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    log = project.root / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            cwd=project.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /ping within 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["n", "seed"], "data": [[3, 7]]}}).encode()
        req = urllib.request.Request(base + "/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            predictions = json.loads(r.read())["predictions"]
        refusals = {  # each answered 400 before any image is generated
            "images per request": {"columns": ["n"], "data": [[100000]]},
            "all rows together": {"columns": ["n", "seed"], "data": [[1024, i] for i in range(200)]},
            "send 1..256 rows": {"columns": ["n"], "data": [[1]] * 300},
            "did you mean 'seed'": {"columns": ["n", "sed"], "data": [[1, 3]]},
            "whole number": {"columns": ["n", "seed"], "data": [[1.5, 0]]},
        }
        for expected, frame in refusals.items():
            body = json.dumps({"dataframe_split": frame}).encode()
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(base + "/invocations", data=body,
                                                              headers={"Content-Type": "application/json"}), timeout=60)
            assert refused.value.code == 400 and expected in refused.value.read().decode(), expected
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert [p["request"] for p in predictions] == [0, 0, 0]
    assert all(decode(p["image"]).shape == (16, 16) for p in predictions)
    # The same request in-process gives the same images: serving adds nothing random.
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    local = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(pd.DataFrame({"n": [3], "seed": [7]}))
    assert [p["image"] for p in predictions] == local["image"].tolist()


@pytest.mark.slow
def test_register_refuses_to_rank_against_a_champion_evaluated_differently(project, registered):
    from ganzoo.tracking.registry import register_checkpoint

    other = json.loads(json.dumps(project.metrics))  # evaluated with 500 samples: another fingerprint
    fp = other["fingerprint"]["classifier"]
    fp.update(generated="500", hash="0123456789ab")
    decision = register_checkpoint(project.cfg, copy_checkpoint(project, "other"), {**other, "fid_classifier": 0.0})
    assert decision["outcome"] == "not-ranked" and decision["alias"] == "challenger"
    assert "generated" in decision["message"] and "eval.n_samples" in decision["message"]
    assert int(project.client.get_model_version_by_alias(NAME, "champion").version) == 3

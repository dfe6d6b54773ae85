"""MLflow runs that say what they are, and a registry that stays clean (issue 21).

One tiny tracked training in a fresh folder with its own SQLite store, then evaluate and register:
the run's name, tags, params, config.yaml, dataset input and system metrics; evaluate and register
leave the training run's end time alone; an identical checkpoint adds no version; with
`tracking.only_champion` a losing challenger leaves none; and the registered model loads where
no ganzoo is importable (its code ships with it)."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from ganzoo import stages
from ganzoo.config import load_config
from ganzoo.tracking import store
from ganzoo.tracking.registry import HASH_TAG, file_sha256, register_checkpoint
from ganzoo.variants import registry as variants

pytestmark = pytest.mark.slow
BASE = ["data.source=digits", "data.image_size=16", "train.steps=8", "train.log_every=2", "train.batch_size=16",
        "train.checkpoint_every=4", "train.progress=false", "tracking.log_every=2", "tracking.image_every=8",
        "eval.n_samples=64", "eval.batch_size=64", "eval.classifier_steps=20", "eval.kid_subset_size=32",
        "eval.bootstrap=20", "monitor.eval_every=0", "model.dcgan.ngf=8", "model.dcgan.ndf=8", "model.dcgan.z_dim=8"]
NAME = "ganzoo-dcgan-digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train (tracked) -> evaluate -> register, twice, in a fresh folder."""
    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow_hygiene").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.05")  # samples within a seconds-long run
        cfg = load_config(None, BASE)
        stages.prepare(cfg)
        result = stages.train(cfg)
        client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        run_id = json.loads((root / "checkpoints" / "dcgan" / "mlflow_run.json").read_text())["run_id"]
        trained_info = client.get_run(run_id).info
        time.sleep(1.1)  # a later end time would show in milliseconds
        metrics = stages.evaluate(cfg)
        first = stages.register(cfg)
        second = stages.register(cfg)
        yield SimpleNamespace(root=root, cfg=cfg, result=result, client=client, run_id=run_id, metrics=metrics,
                              trained_info=trained_info, first=first, second=second)
    mlflow.set_tracking_uri(None)


def copy_checkpoint(src: Path, dst: Path, note: str) -> Path:
    """The same model in a file with other bytes (another training's checkpoint, for the registry)."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["test_note"] = note
    torch.save(ckpt, dst)
    return dst


def test_the_run_says_what_it_is(trained):
    run = trained.client.get_run(trained.run_id)
    assert re.fullmatch(r"dcgan-digits-16-[0-9a-f]{6}", run.info.run_name), run.info.run_name
    tags = run.data.tags
    for tag in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):  # what mlflow.start_run sets
        assert tags.get(tag), tag
    experiment = trained.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    params = run.data.params
    assert params == store.run_params(variants.resolve(trained.cfg))
    assert params["model.dcgan.ngf"] == "8" and params["train.steps"] == "8"
    assert not [k for k in params if k.endswith(("_dir", ".root", ".uri")) or k.startswith("tracking.")]
    assert "None" not in params.values() and not [k for k in params if k.startswith("model.") and ".dcgan." not in k]
    config_path = Path(run.info.artifact_uri.removeprefix("file://")) / "config.yaml"
    assert yaml.safe_load(config_path.read_text()) == variants.resolve(trained.cfg).model_dump(mode="json")

    (dataset_input,) = run.inputs.dataset_inputs
    manifest = json.loads((trained.root / "data" / "prepared" / "digits-16" / "manifest.json").read_text())
    assert dataset_input.dataset.digest == manifest["content_hash"] and dataset_input.dataset.name == "digits-16"
    assert json.loads(dataset_input.dataset.source)["uri"] == str(trained.root / "data" / "prepared" / "digits-16")
    assert "system/cpu_utilization_percentage" in run.data.metrics


def test_evaluate_and_register_leave_the_training_runs_end_time(trained):
    after = trained.client.get_run(trained.run_id)
    assert after.info.status == "FINISHED" == trained.trained_info.status
    assert after.info.end_time == trained.trained_info.end_time  # evaluated and registered >1 s later
    assert after.data.metrics["eval/fid_classifier"] == pytest.approx(trained.metrics["fid_classifier"])
    version = trained.client.get_model_version(NAME, "1")
    assert version.run_id == trained.run_id  # the model is still an output of the training run
    (output,) = after.outputs.model_outputs
    assert version.source == f"models:/{output.model_id}"


def test_registering_the_same_checkpoint_twice_adds_one_version(trained):
    assert trained.first["version"] == 1 and trained.first["outcome"] == "champion"
    assert trained.second["outcome"] == "duplicate" and trained.second["version"] is None
    assert trained.second["duplicate_of"] == 1 and trained.second["alias"] == "champion"
    assert "no new version" in trained.second["message"]
    assert len(trained.client.search_model_versions(f"name = '{NAME}'")) == 1
    version = trained.client.get_model_version(NAME, "1")
    assert version.tags[HASH_TAG] == file_sha256(trained.result.checkpoint)
    assert version.description.startswith("champion: there was no champion")


def live_logged_models(trained) -> set[str]:
    """Ids of the logged models of the run's experiment that are not deleted (MLflow's search
    leaves deleted ones out)."""
    experiment = trained.client.get_run(trained.run_id).info.experiment_id
    return {m.model_id for m in trained.client.search_logged_models([experiment], max_results=1000)}


def test_a_register_racing_one_of_the_same_bytes_removes_its_own_version(trained, monkeypatch):
    # Both registers of one checkpoint found no version with its bytes before logging (the other
    # had not registered yet): the later version sees the earlier under the lock and removes itself.
    from ganzoo.tracking import registry

    monkeypatch.chdir(trained.root)
    before = len(trained.client.search_model_versions(f"name = '{NAME}'"))
    real, calls = registry.identical_version, []

    def not_yet_then_real(client, name, digest):
        calls.append(name)
        return None if len(calls) == 1 else real(client, name, digest)

    monkeypatch.setattr(registry, "identical_version", not_yet_then_real)
    models_before = live_logged_models(trained)
    raced = register_checkpoint(trained.cfg, trained.result.checkpoint, trained.metrics)
    assert len(calls) == 2, "the bytes are checked again under the registry lock"
    assert raced["outcome"] == "duplicate" and raced["duplicate_of"] == 1 and raced["version"] is None
    assert len(trained.client.search_model_versions(f"name = '{NAME}'")) == before
    assert live_logged_models(trained) == models_before, "the raced register's logged model is withdrawn too"
    assert str(trained.client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_only_champion_leaves_no_version_when_the_challenger_loses(trained, monkeypatch):
    monkeypatch.chdir(trained.root)
    cfg = load_config(None, [*BASE, "tracking.only_champion=true"])
    fid = trained.metrics["fid_classifier"]
    loser = copy_checkpoint(trained.result.checkpoint, trained.root / "loser.pt", "loser")
    lost = register_checkpoint(cfg, loser, {**trained.metrics, "fid_classifier": fid + 100,
                                            "fid_classifier_ci_low": fid + 99, "fid_classifier_ci_high": fid + 101})
    assert lost["outcome"] == "not-registered" and lost["version"] is None
    assert "does not beat champion v1" in lost["message"] and lost["previous_champion"] == 1
    assert len(trained.client.search_model_versions(f"name = '{NAME}'")) == 1

    winner = copy_checkpoint(trained.result.checkpoint, trained.root / "winner.pt", "winner")
    won = register_checkpoint(cfg, winner, {**trained.metrics, "fid_classifier": fid / 100,
                                            "fid_classifier_ci_low": fid / 101, "fid_classifier_ci_high": fid / 99})
    assert won["outcome"] == "champion" and won["version"] > 1  # numbers of removed versions are not reused
    assert int(trained.client.get_model_version_by_alias(NAME, "champion").version) == won["version"]
    assert len(trained.client.search_model_versions(f"name = '{NAME}'")) == 2
    assert trained.client.get_model_version(NAME, str(won["version"])).description.startswith(
        "champion: fid_classifier")


LOAD_WITHOUT_GANZOO = textwrap.dedent("""
    import importlib.util, os, sys
    # Neither the editable install's src nor PYTHONPATH: no ganzoo is importable in this process.
    sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "ganzoo"))]
    assert importlib.util.find_spec("ganzoo") is None, "ganzoo is still importable"
    import mlflow
    import pandas as pd
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    out = model.predict(pd.DataFrame({"n": [3], "seed": [0]}))
    import ganzoo
    print(len(out), ganzoo.__file__)
""")


def test_the_served_model_loads_without_an_installed_ganzoo(trained):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_GANZOO, f"sqlite:///{trained.root / 'mlflow.db'}",
                           f"models:/{NAME}/1"], cwd=trained.root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, origin = proc.stdout.split()[-2:]
    assert count == "3" and f"{os.sep}code{os.sep}ganzoo{os.sep}" in origin  # the model's own copy


def test_train_prints_its_run_id_url_and_elapsed_time(trained, monkeypatch, capsys):
    from ganzoo.cli import main

    monkeypatch.chdir(trained.root)
    overrides = [*BASE, "train.steps=2", "train.out_dir=cli_ck", "train.metrics_dir=cli_m"]
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["train", *sets]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    uri = f"sqlite:///{trained.root / 'mlflow.db'}"
    found = re.fullmatch(r"MLflow run ([0-9a-f]{32}): http://127\.0\.0\.1:5000/#/experiments/(\d+)/runs/\1 "
                         r"\(open with `mlflow ui --backend-store-uri (\S+)`\)", line)
    assert found and found.group(3) == uri, line
    assert trained.client.get_run(found.group(1)).info.status == "FINISHED"

    assert main(["train", "--json", *sets]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["elapsed_s"] > 0 and printed["mlflow"]["tracking_uri"] == uri
    assert printed["mlflow"]["run_id"] != found.group(1)  # a fresh run each time
    assert printed["mlflow"]["url"].endswith(f"/runs/{printed['mlflow']['run_id']}")

"""Where runs go and what they are called: the default store under DVC, run names, context tags
from a flow, the params worth logging, and the links `ganzoo train` prints."""

import re
from pathlib import Path

import pytest

from ganzoo.config import load_config
from ganzoo.tracking import store
from ganzoo.tracking.context import current, run_context
from ganzoo.variants import registry


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE", "DVC_EXP_BASELINE_REV", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_the_default_store_resolves_against_the_dvc_repository(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    assert store.resolve_uri(None) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    repo = tmp_path / "repo"
    clean_env.setenv("DVC_ROOT", str(repo))  # what DVC sets, also in a queued/temp experiment's copy
    assert store.resolve_uri(None) == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    assert store.resolve_uri("sqlite:///state/runs.db") == f"sqlite:///{repo.resolve() / 'state' / 'runs.db'}"
    assert store.resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"  # absolute stays
    assert store.resolve_uri("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert store.artifact_location(store.resolve_uri(None)) == (repo.resolve() / "mlartifacts").as_uri()


def test_run_names_are_unique_and_say_what_ran(clean_env):
    cfg = registry.resolve(load_config(None, ["variant=lsgan", "data.source=digits", "data.image_size=16"]))
    names = {store.run_name(cfg) for _ in range(20)}
    assert len(names) == 20 and all(re.fullmatch(r"lsgan-digits-16-[0-9a-f]{6}", n) for n in names)
    clean_env.setenv("DVC_EXP_NAME", "wgan-gp-narrow")
    assert store.run_name(cfg) == "wgan-gp-narrow"
    with run_context(name="lsgan-digits-20250101-031500"):  # a flow's run name wins
        assert store.run_name(cfg) == "lsgan-digits-20250101-031500"
    assert current().name is None  # the context ends with the block


def test_context_tags_dvc_tags_and_a_parent_run(clean_env):
    cfg = registry.resolve(load_config(None, []))
    clean_env.setenv("DVC_STAGE", "train")
    clean_env.setenv("DVC_EXP_NAME", "longer")
    with run_context(parent_run_id="abc123", tags={"prefect.flow_run_name": "sweep-x"}) as ctx:
        tags = store.run_tags(cfg)
    assert tags["mlflow.parentRunId"] == "abc123" and tags["prefect.flow_run_name"] == "sweep-x"
    assert tags["dvc.stage"] == "train" and tags["dvc.exp_name"] == "longer"
    assert tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    assert "mlflow.parentRunId" not in store.run_tags(cfg)  # outside the block
    assert store.run_tags(cfg, ctx)["mlflow.parentRunId"] == "abc123"  # captured, for another thread


def test_params_drop_nulls_paths_logging_settings_and_other_variants():
    cfg = registry.resolve(load_config("params.yaml" if Path("params.yaml").exists() else None,
                                       ["variant=cgan", "data.root=/data/x"]))
    params = store.run_params(cfg)
    assert params["variant"] == "cgan" and params["model.cgan.ngf"] == str(cfg.model["cgan"]["ngf"])
    assert not [k for k in params if k.startswith("model.") and not k.startswith("model.cgan.")]
    for dropped in ("data.root", "data.prepared_dir", "train.out_dir", "train.metrics_dir", "eval.out_dir",
                    "eval.classifier_dir", "tracking.uri", "tracking.experiment", "train.lr", "train.progress"):
        assert dropped not in params, dropped
    assert "None" not in params.values() and len(params) < 50


def test_run_links_for_a_server_and_a_database():
    web = store.run_link("http://mlflow.example:5000", 3, "r1")
    assert web["url"] == "http://mlflow.example:5000/#/experiments/3/runs/r1" and web["ui_command"] is None
    local = store.run_link("sqlite:////srv/mlflow.db", "1", "r2")
    assert local["ui_command"] == "mlflow ui --backend-store-uri sqlite:////srv/mlflow.db"
    assert local["url"] == "http://127.0.0.1:5000/#/experiments/1/runs/r2"


def test_a_sidecar_describes_only_its_own_checkpoint(tmp_path):
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"weights")
    store.write_sidecar(tmp_path, {"run_id": "r", "experiment_id": "1", "tracking_uri": "sqlite:////x.db",
                                   "checkpoint": store.checkpoint_stamp(ckpt)})
    assert store.trained_run(ckpt)["run_id"] == "r"
    ckpt.write_bytes(b"other weights, an untracked run's")
    assert store.trained_run(ckpt) is None

"""`dvc repro` end to end in a temporary copy of the project, with tiny params."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def project(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copytree(REPO / "src", tmp_path / "src")  # stage deps point into the package source
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["data"].update(image_size=16, limit=200)
    params["model"]["dcgan"].update(ngf=8, ndf=8)
    params["train"].update(steps=6, batch_size=16, checkpoint_every=3, log_every=2, progress=False, threads=1)
    params["eval"].update(n_samples=100, classifier_steps=20, kid_subset_size=50)
    params["tracking"]["enabled"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    run(["git", "init", "-q"], tmp_path, env)
    run(["git", "add", "-A"], tmp_path, env)
    run(["git", "commit", "-qm", "init"], tmp_path, env)
    return tmp_path, env


def test_dvc_repro_end_to_end_then_noop_then_partial(project):
    root, env = project
    dvc = [sys.executable, "-m", "dvc"]
    out = run([*dvc, "repro"], root, env)
    for stage in ("prepare", "classifier", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    metrics = json.loads((root / "eval/dcgan/metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["fid_classifier"] >= 0
    assert (root / "eval/dcgan/sheets/samples.png").stat().st_size > 0
    assert (root / "metrics/dcgan/losses.csv").read_text().startswith("step,loss_d,loss_g")
    assert "fid_classifier" in run([*dvc, "metrics", "show"], root, env)

    out = run([*dvc, "repro"], root, env)  # nothing changed: nothing runs
    assert "Running stage" not in out

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["steps"] = 9
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([*dvc, "repro"], root, env)
    ran = {s for s in ("prepare", "classifier", "train", "evaluate") if f"Running stage '{s}'" in out}
    assert ran == {"train", "evaluate"}, out
    # train resumed from the persisted checkpoint instead of starting over
    assert json.loads((root / "eval/dcgan/metrics.json").read_text())["step"] == 9


def test_dvc_exp_run_with_set_param(project):
    root, env = project
    dvc = [sys.executable, "-m", "dvc"]
    run([*dvc, "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    run([*dvc, "exp", "run", "-S", "train.steps=8"], root, env)
    shown = run([*dvc, "exp", "show", "--json"], root, env)
    assert "train.steps" in shown or '"steps": 8' in shown

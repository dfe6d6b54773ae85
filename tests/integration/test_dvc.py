"""DVC end to end in a temporary clone of the project (its real dvc.yaml, params.yaml, .gitignore,
.dvcignore and .dvc/ files, with tiny params): `dvc repro`, then experiments whose metrics and plots
DVC's own views show."""

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
# What the project needs when git cannot list it (a copy without .git): the stage code and DVC's files.
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore", "src"]


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def run_json(cmd, cwd, env):
    """A `--json` command's document (stdout; DVC's warnings go to stderr)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def project_files() -> list[str]:
    """The repository's files as a clone would have them (tracked and new, not ignored), read from
    the working tree so that uncommitted changes are tested too."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True)
    if listed.returncode != 0:
        return PROJECT_FILES
    return [f for f in listed.stdout.splitlines() if (REPO / f).is_file()]


def make_project(root: Path, tracking: bool = False) -> tuple[Path, dict]:
    """A git repository in `root` holding the project's files with tiny params; -> (root, env).
    tracking: MLflow on, at its default store (no tracking.uri, no MLFLOW_TRACKING_URI)."""
    for name in project_files():
        src = REPO / name
        dst = root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update(image_size=16, limit=200)
    params["model"]["dcgan"].update(ngf=8, ndf=8)
    params["train"].update(steps=6, batch_size=16, checkpoint_every=3, log_every=2, threads=1)
    params["eval"].update(n_samples=100, classifier_steps=20, kid_subset_size=50)
    params["tracking"]["enabled"] = tracking
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        env.pop(var, None)
    run(["git", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "init"], root, env)
    return root, env


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


DVC = [sys.executable, "-m", "dvc"]
STAGES = ("prepare", "classifier", "train", "evaluate")


def ran(out: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in out}


def test_dvc_repro_end_to_end_then_noop_then_partial(project):
    root, env = project
    out = run([*DVC, "repro"], root, env)
    assert ran(out) == set(STAGES)
    assert "train: step 6/6" in out  # no terminal: progress as plain lines, not one \r-redrawn bar
    metrics = json.loads((root / "eval/dcgan/metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["fid_classifier"] >= 0
    scores = json.loads((root / "eval/scores.json").read_text())
    assert scores["fid_classifier"] == metrics["fid_classifier"] and "step" not in scores
    assert all(isinstance(v, (int, float)) for v in scores.values())
    assert (root / "eval/dcgan/sheets/samples.png").stat().st_size > 0
    assert (root / "metrics/dcgan/losses.csv").read_text().startswith("step,loss_d,loss_g")
    assert "fid_classifier" in run([*DVC, "metrics", "show"], root, env)

    out = run([*DVC, "repro"], root, env)  # nothing changed: nothing runs
    assert not ran(out)

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["steps"] = 9
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([*DVC, "repro"], root, env)
    assert ran(out) == {"train", "evaluate"}, out
    # train resumed from the persisted checkpoint instead of starting over
    assert json.loads((root / "eval/dcgan/metrics.json").read_text())["step"] == 9


def experiments(shown: list) -> dict[str, dict]:
    """`dvc exp show --json` -> {experiment name: its data (params, metrics)}."""
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found[rev.get("name") or rev["rev"]] = rev["data"]
    return found


def test_experiments_carry_their_metrics_and_plots(project):
    root, env = project
    run([*DVC, "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    assert run(["git", "status", "--porcelain"], root, env) == ""  # outputs: committed or ignored, none stray

    run([*DVC, "exp", "run", "-n", "longer", "-S", "train.steps=8"], root, env)
    # Another variant, its own section's keys set as they are in params.yaml (no `+` needed), and
    # the same data source: prepare does not run again.
    out = run([*DVC, "exp", "run", "-n", "lsgan", "-S", "variant=lsgan", "-S", "model.lsgan.ngf=8",
               "-S", "model.lsgan.ndf=8"], root, env)
    assert "prepare" not in ran(out) and {"train", "evaluate"} <= ran(out), out

    exps = experiments(run_json([*DVC, "exp", "show", "--json"], root, env))
    columns = {}
    # `dvc exp run` starts from the workspace, which holds the previous experiment: steps 8 in both
    for name, steps, variant in (("longer", 8, "dcgan"), ("lsgan", 8, "lsgan")):
        data = exps[name]
        params = data["params"]["params.yaml"]["data"]
        assert params["variant"] == variant and params["train"]["steps"] == steps
        scores = data["metrics"]["eval/scores.json"]["data"]
        assert scores["fid_classifier"] >= 0 and all(isinstance(v, (int, float)) for v in scores.values())
        columns[name] = set(scores)
    assert columns["longer"] == columns["lsgan"]  # two variants, one set of columns

    diff = run_json([*DVC, "metrics", "diff", "HEAD", "lsgan", "--json"], root, env)
    assert "fid_classifier" in diff["eval/scores.json"]
    plots = run_json([*DVC, "plots", "diff", "longer", "lsgan", "--json"], root, env)["data"]
    lines = {k: v for k, v in plots.items() if k.endswith(" losses") and v}
    assert set(lines) == {"dcgan losses", "lsgan losses"}  # each variant's history from its revision
    assert {"loss_d", "loss_g"} <= {row["field"] for plot in lines.values()
                                    for row in plot[0]["content"]["data"]["values"]}
    images = {Path(k).as_posix(): [v["revisions"] for v in plot] for k, plot in plots.items()
              if plot and plot[0]["type"] == "image"}
    assert images.get("eval/dcgan/sheets/samples.png") == [["longer"]], images  # the sheets of each revision
    assert images.get("eval/lsgan/sheets/samples.png") == [["lsgan"]], images

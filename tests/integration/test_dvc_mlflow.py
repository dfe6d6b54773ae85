"""DVC experiments keep their MLflow runs: a `dvc exp run --temp` or `--queue` experiment runs in
a temporary copy of the repository that DVC deletes afterwards, yet its MLflow run (named after
the experiment, with the evaluation's metrics) lands in the repository's default store
(`sqlite:///mlflow.db` at the repository root, resolved against $DVC_ROOT)."""

import time

import pytest

from tests.integration.test_dvc import DVC, make_project, run

pytestmark = pytest.mark.slow
TINY = ["-S", "train.steps=4", "-S", "monitor.eval_every=0"]


def start_and_wait_for_the_queue(root, env, timeout_s: float = 600) -> str:
    """`dvc queue start` (one worker, which exits when the queue is empty), then poll until done."""
    run([*DVC, "queue", "start"], root, env)
    deadline = time.monotonic() + timeout_s
    while True:
        status = run([*DVC, "queue", "status"], root, env)
        if "Running" not in status and "Queued" not in status:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(3)


@pytest.mark.parametrize("how", ["--temp", "--queue"])
def test_an_experiments_mlflow_run_lands_in_the_repositorys_store(tmp_path, how):
    from mlflow import MlflowClient

    root, env = make_project(tmp_path, tracking=True)
    name = f"tiny-{how.strip('-')}"
    # DVC runs the whole pipeline in a copy under .dvc/tmp/ and removes it afterwards.
    out = run([*DVC, "exp", "run", how, "-n", name, *TINY], root, env)
    if how == "--queue":
        assert "Success" in start_and_wait_for_the_queue(root, env)
        out = run([*DVC, "queue", "logs", name], root, env)
    assert "Running stage 'train'" in out, out
    assert not (root / "checkpoints").exists()  # nothing ran in the repository's own folder

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ganzoo")
    assert experiment is not None, "no MLflow experiment in the repository's store"
    (training,) = client.search_runs([experiment.experiment_id])
    assert training.info.run_name == name and training.data.tags["dvc.exp_name"] == name
    assert training.info.status == "FINISHED" and training.data.params["train.steps"] == "4"
    assert "eval/fid_classifier" in training.data.metrics  # the evaluate stage found the same run
    # Artifacts beside the repository's database, not in the deleted copy.
    assert experiment.artifact_location == (root / "mlartifacts").as_uri()
    assert [a.path for a in client.list_artifacts(training.info.run_id, "checkpoint")] == ["checkpoint/last.pt"]
    assert (root / "mlartifacts").is_dir()

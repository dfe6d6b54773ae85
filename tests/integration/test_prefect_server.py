"""The deployments against a real `prefect server start` on loopback: the cron-scheduled
deployment is registered and served by `python -m flows.deploy serve`, a triggered run
completes; prefect.yaml's `local` deployment, registered by `prefect deploy`, runs flows on a
process worker one at a time; and its `gpu` deployment registers from code with its GPU request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import write_params

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CRON = "0 3 * * *"
STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def start(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own handle
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)  # the process group: the served flow run's child too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until(check, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout_s} s\n{tail(log)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own PREFECT_HOME, shared by this
    module's tests; yields the env that points children at it."""
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ,
           "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # the served runner picks up a run within a second
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = tmp_path / "server.log"
    prefect_cli = str(Path(sys.executable).with_name("prefect"))
    proc = start([prefect_cli, "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env=env)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, STARTUP_S, "prefect server start", proc, log)
        yield env
    finally:
        stop(proc)


@pytest.fixture
def api(server):
    """This process's Prefect client settings, pointed at the server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings({PREFECT_API_URL: server["PREFECT_API_URL"], PREFECT_HOME: server["PREFECT_HOME"]}):
        yield server


def read_deployment(name: str):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def test_scheduled_deployment_is_served_and_a_triggered_run_completes(api, tmp_path):
    from prefect.deployments import run_deployment

    project = tmp_path / "project"
    project.mkdir()
    write_params(project)
    log = tmp_path / "serve.log"
    serve = start([sys.executable, "-m", "flows.deploy", "serve", "--cron", CRON, "--name", "it",
                   "--params", "params.yaml"], log, cwd=project, env=api)
    try:
        deployment = wait_until(lambda: read_deployment("ganzoo-pipeline/it"), 90, "deployment registered",
                                serve, log)
        [schedule] = deployment.schedules
        assert schedule.schedule.cron == CRON and schedule.active
        assert deployment.parameters["params"] == "params.yaml"
        assert deployment.global_concurrency_limit.limit == 1  # a manual run waits for the nightly one

        # register is covered by test_flows; here MLflow would only add its start-up time
        run = run_deployment("ganzoo-pipeline/it", parameters={"retry_delay_s": 0, "register_model": False},
                             timeout=150, poll_interval=1)
        assert run.state.is_completed(), f"{run.state}\n{tail(log)}"
        assert (project / "checkpoints" / "dcgan" / "last.pt").is_file()  # ran in the serving folder
        assert (project / "eval" / "dcgan" / "metrics.json").is_file()
    finally:
        stop(serve, signal.SIGINT)  # as Ctrl-C: the runner pauses the schedule and exits


def test_work_pool_deployment_registers_from_prefect_yaml(api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.deploy import deploy_to_pool

    # prefect-docker's template is not installed here; a pool with an `image` variable is what
    # flow.deploy checks for, and is enough to store the deployment's job variables.
    template = {"job_configuration": {"image": "{{ image }}"},
                "variables": {"type": "object", "properties": {"image": {"type": "string"}}}}
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ganzoo-gpu", type="docker", base_job_template=template))

    deploy_to_pool("gpu")
    deployment = read_deployment("ganzoo-pipeline/gpu")
    assert deployment.work_pool_name == "ganzoo-gpu"
    assert deployment.entrypoint == "flows.pipeline.pipeline"
    assert deployment.job_variables["image"] == "ganzoo:latest"
    request = deployment.job_variables["container_create_kwargs"]["device_requests"][0]
    assert request["capabilities"] == [["gpu"]]
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 0"]
    assert not deployment.schedules[0].active
    assert deployment.global_concurrency_limit.limit == 1


def test_local_process_pool_deployment_runs_flows_one_at_a_time(api, tmp_path):
    """As prefect.yaml says: `prefect deploy --name local` in the project folder, a process worker,
    two runs triggered at once (a cron run and a manual one, say): both complete, one after the
    other, in the project folder, with names that say what ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    from flows.deploy import deploy_to_pool

    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    write_params(project)
    env = {**api, "PWD": str(project)}  # the shell's folder, as `cd project && prefect deploy` has it
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="ganzoo-local", type="process"))
    prefect_cli = str(Path(sys.executable).with_name("prefect"))
    deployed = subprocess.run([prefect_cli, "--no-prompt", "deploy", "--name", "local"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    by_cli = read_deployment("ganzoo-pipeline/local")
    assert by_cli.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}]
    assert by_cli.global_concurrency_limit.limit == 1 and by_cli.concurrency_options.collision_strategy == "ENQUEUE"

    log = tmp_path / "worker.log"
    worker = start([prefect_cli, "worker", "start", "--pool", "ganzoo-local", "--limit", "2"], log, cwd=project,
                   env=env)
    try:
        params = {"retry_delay_s": 0, "register_model": False}
        runs = [run_deployment("ganzoo-pipeline/local", parameters=params, timeout=0) for _ in range(2)]
        with get_client(sync_client=True) as client:
            def finished():
                states = [client.read_flow_run(r.id) for r in runs]
                return states if all(s.state.is_final() for s in states) else None

            done = wait_until(finished, 300, "two runs of the local deployment", worker, log)
    finally:
        stop(worker, signal.SIGINT)
    assert all(r.state.is_completed() for r in done), f"{[r.state for r in done]}\n{tail(log)}"
    first, second = sorted(done, key=lambda r: r.start_time)
    assert second.start_time >= first.end_time  # the second waited for the first (ENQUEUE)
    for r in done:
        assert re.fullmatch(r"dcgan-digits-\d{8}-\d{6}", r.name), r.name
    assert (project / "checkpoints" / "dcgan" / "last.pt").is_file()  # ran in the project folder
    assert (project / "eval" / "dcgan" / "metrics.json").is_file()

    cwd = Path.cwd()
    os.chdir(project)
    try:  # the same deployment from code: stored the same way
        deploy_to_pool("local")
    finally:
        os.chdir(cwd)
    by_code = read_deployment("ganzoo-pipeline/local")
    for field in ("pull_steps", "parameters", "job_variables", "entrypoint", "work_pool_name", "tags",
                  "concurrency_options"):
        assert getattr(by_code, field) == getattr(by_cli, field), field
    assert by_code.global_concurrency_limit.limit == 1

    def schedules(d):
        return [(s.schedule.cron, s.active) for s in d.schedules]

    assert schedules(by_code) == schedules(by_cli) == [("0 3 * * *", False)]

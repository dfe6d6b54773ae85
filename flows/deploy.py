"""Deployments of the pipeline flow (both need a Prefect server: `prefect server start`, and
PREFECT_API_URL=http://127.0.0.1:4200/api in the shell that runs this).

    python -m flows.deploy serve [--cron "0 3 * * *"] [--timezone UTC] [--name nightly] [--params P] [--set K=V ...]
        registers the deployment with its cron schedule and serves it from this process: scheduled
        and manually triggered runs (`prefect deployment run ganzoo-pipeline/nightly`) execute here,
        in this folder, with this environment. Stopping the process pauses the schedule.

    python -m flows.deploy pool [--name gpu] [--image ganzoo:latest]
        registers the work-pool deployment declared in prefect.yaml (the Docker image, the GPU
        request, the mounts) from code; `prefect deploy --name gpu` does the same from the CLI.
        A worker runs it: `prefect worker start --pool ganzoo-gpu` (see docs/orchestration.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from flows.pipeline import pipeline
from ganzoo.config import add_arguments

DEFAULT_CRON = "0 3 * * *"  # nightly retrain at 03:00
DEFAULT_SCHEDULED_NAME = "nightly"
PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def scheduled_deployment(cron: str = DEFAULT_CRON, name: str = DEFAULT_SCHEDULED_NAME, timezone: str = "UTC",
                         params: str | None = "params.yaml", overrides: list[str] | None = None,
                         resume: str = "no"):
    """The pipeline with a cron schedule. A scheduled retrain starts fresh (resume='no'): the point
    is to pick up new data or code, which a resumed finished checkpoint would not."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    return pipeline.to_deployment(
        name=name,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"params": params, "overrides": list(overrides or []), "resume": resume},
        description=f"ganzoo pipeline on {params}, retrained on cron {cron!r} ({timezone})",
        tags=["ganzoo", "scheduled"],
        # Module path (flows.pipeline.pipeline), not a file path: runs start in the serving
        # process's folder, which holds params.yaml and the outputs, not necessarily the code.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve(**kwargs) -> None:
    """Register the scheduled deployment and execute its runs until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(scheduled_deployment(**kwargs))


def pool_spec(name: str = "gpu", path: Path = PREFECT_YAML) -> dict:
    """The deployment entry `name` from prefect.yaml: the single definition of the work-pool run."""
    spec = yaml.safe_load(path.read_text())
    for dep in spec.get("deployments") or []:
        if dep.get("name") == name:
            return dep
    names = [d.get("name") for d in spec.get("deployments") or []]
    raise SystemExit(f"ganzoo: error: no deployment {name!r} in {path}; it declares {names}")


def deploy_to_pool(name: str = "gpu", image: str | None = None) -> object:
    """Register prefect.yaml's work-pool deployment from code (the image is built separately:
    `docker build -t ganzoo .`; nothing is built or pushed here)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    spec = pool_spec(name)
    pool = spec["work_pool"]
    job_variables = dict(pool.get("job_variables") or {})
    if image:
        job_variables["image"] = image
    schedules = [Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
                 for s in spec.get("schedules") or [] if "cron" in s]
    return pipeline.deploy(
        name=name, work_pool_name=pool["name"], work_queue_name=pool.get("work_queue_name"),
        image=job_variables.pop("image"), build=False, push=False, job_variables=job_variables,
        parameters=spec.get("parameters") or {}, schedules=schedules, tags=spec.get("tags"),
        description=spec.get("description"), print_next_steps=False,
        # flows.pipeline.pipeline: importable in the image from any folder (PYTHONPATH), unlike a
        # file path, which would be relative to wherever this command ran.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description="Deploy the ganzoo pipeline flow.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="register the cron-scheduled deployment and serve its runs here")
    add_arguments(p)
    p.add_argument("--cron", default=DEFAULT_CRON, help=f"cron schedule (default {DEFAULT_CRON!r})")
    p.add_argument("--timezone", default="UTC")
    p.add_argument("--name", default=DEFAULT_SCHEDULED_NAME)
    p.add_argument("--resume", default="no", choices=["no", "auto", "yes"],
                   help="scheduled runs retrain from scratch by default")
    p = sub.add_parser("pool", help="register prefect.yaml's work-pool deployment (Docker image, GPU)")
    p.add_argument("--name", default="gpu", help="deployment name in prefect.yaml (default gpu)")
    p.add_argument("--image", default=None, help="override the image in prefect.yaml")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(cron=args.cron, name=args.name, timezone=args.timezone, params=args.params,
              overrides=args.overrides, resume=args.resume)
    else:
        deployment_id = deploy_to_pool(args.name, args.image)
        print(f"registered ganzoo-pipeline/{args.name} ({deployment_id}); run it with a worker: "
              f"prefect worker start --pool {pool_spec(args.name)['work_pool']['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

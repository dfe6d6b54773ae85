"""Deployments of the pipeline flow (both need a Prefect server: `prefect server start`, and
PREFECT_API_URL=http://127.0.0.1:4200/api in the shell that runs this).

    python -m flows.deploy serve [--cron "0 3 * * *"] [--timezone UTC] [--name nightly] [--only-champion]
                                 [--params P] [--set K=V ...]
        registers the deployment with its cron schedule and serves it from this process: scheduled
        and manually triggered runs (`prefect deployment run ganzoo-pipeline/nightly`) execute here,
        in this folder, with this environment. Stopping the process pauses the schedule.

    python -m flows.deploy pool [--name gpu|local] [--image ganzoo:latest]
        registers a work-pool deployment declared in prefect.yaml from code, as `prefect deploy
        --name NAME` does from the CLI: `gpu` (the Docker image, the GPU request, the mounts) or
        `local` (a process worker's pool; runs start in the folder this command ran in). A worker
        runs it: `prefect worker start --pool ganzoo-gpu` (see docs/orchestration.md).

Every deployment runs one flow at a time (a run that finds another running waits: ENQUEUE), so a
scheduled run and a manual one never write the same checkpoint folder at once.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import yaml

from flows.pipeline import pipeline
from ganzoo.config import add_arguments

DEFAULT_CRON = "0 3 * * *"  # nightly retrain at 03:00
DEFAULT_SCHEDULED_NAME = "nightly"
PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
ONE_AT_A_TIME = {"limit": 1, "collision_strategy": "ENQUEUE"}


def concurrency(spec: dict | None = None):
    """A deployment's concurrency limit (prefect.yaml's `concurrency_limit`, else one run at a time)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    value = (spec or {}).get("concurrency_limit", ONE_AT_A_TIME)
    return value if isinstance(value, int) else ConcurrencyLimitConfig(**value)


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
        concurrency_limit=concurrency(),  # a scheduled and a manual run never overlap
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
    """Register one of prefect.yaml's work-pool deployments from code: with an image (`gpu`: built
    separately, `docker build -t ganzoo .`; nothing is built or pushed here) or without (`local`)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    spec = pool_spec(name)
    pool = spec["work_pool"]
    job_variables = dict(pool.get("job_variables") or {})
    if image:
        job_variables["image"] = image
    if "image" not in job_variables:
        return deploy_process(spec)
    schedules = [Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
                 for s in spec.get("schedules") or [] if "cron" in s]
    return pipeline.deploy(
        name=name, work_pool_name=pool["name"], work_queue_name=pool.get("work_queue_name"),
        image=job_variables.pop("image"), build=False, push=False, job_variables=job_variables,
        parameters=spec.get("parameters") or {}, schedules=schedules, tags=spec.get("tags"),
        description=spec.get("description"), print_next_steps=False, concurrency_limit=concurrency(spec),
        # flows.pipeline.pipeline: importable in the image from any folder (PYTHONPATH), unlike a
        # file path, which would be relative to wherever this command ran.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def deploy_process(spec: dict) -> object:
    """A deployment whose runs a process worker starts from prefect.yaml's pull steps (no image):
    stored as `prefect deploy` stores it, `{{ $PWD }}` being this command's folder."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.objects import ConcurrencyOptions
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema

    spec = with_env(spec, {**os.environ, "PWD": os.getcwd()})
    pool = spec["work_pool"]
    limit = concurrency(spec)
    schedules = [DeploymentScheduleCreate(schedule=CronSchedule(cron=s["cron"], timezone=s.get("timezone", "UTC")),
                                          active=s.get("active", True))
                 for s in spec.get("schedules") or [] if "cron" in s]
    with get_client(sync_client=True) as client:
        return client.create_deployment(  # an upsert: deploying again updates it
            flow_id=client.create_flow_from_name(pipeline.name), name=spec["name"], entrypoint=spec["entrypoint"],
            work_pool_name=pool["name"], work_queue_name=pool.get("work_queue_name"),
            job_variables=pool.get("job_variables") or {}, pull_steps=spec.get("pull") or [],
            parameters=spec.get("parameters") or {}, schedules=schedules, tags=spec.get("tags") or [],
            description=spec.get("description"), parameter_openapi_schema=parameter_schema(pipeline).model_dump(),
            concurrency_limit=limit if isinstance(limit, int) else limit.limit,
            concurrency_options=None if isinstance(limit, int) else ConcurrencyOptions(
                collision_strategy=limit.collision_strategy))


ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def with_env(value, env: dict):
    """prefect.yaml's `{{ $NAME }}` placeholders filled from `env`, as `prefect deploy` fills them
    from its environment (unknown names stay as they are)."""
    if isinstance(value, str):
        return ENV_PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: with_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [with_env(v, env) for v in value]
    return value


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
    p.add_argument("--only-champion", action="store_true",
                   help="register a retrained model only when it becomes champion (tracking.only_champion=true): "
                        "a nightly run that loses adds no registry version")
    p = sub.add_parser("pool", help="register a prefect.yaml work-pool deployment: gpu (Docker image, GPU) "
                                    "or local (process worker, runs in this folder)")
    p.add_argument("--name", default="gpu", help="deployment name in prefect.yaml (default gpu)")
    p.add_argument("--image", default=None, help="override the image in prefect.yaml")
    args = parser.parse_args(argv)
    if args.command == "serve":
        only = ["tracking.only_champion=true"] if args.only_champion else []
        serve(cron=args.cron, name=args.name, timezone=args.timezone, params=args.params,
              overrides=[*args.overrides, *only], resume=args.resume)
    else:
        deployment_id = deploy_to_pool(args.name, args.image)
        print(f"registered ganzoo-pipeline/{args.name} ({deployment_id}); run it with a worker: "
              f"prefect worker start --pool {pool_spec(args.name)['work_pool']['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Prefect deployments: the nightly monitor of each configured model, and the backfill.

`serve()` runs them in this process with `prefect.serve` (no work pool); `deploy_to_pool()` (and
`python -m flows.deployments deploy`) creates a process work pool and registers every served
model's nightly deployment and the backfill in it, for `prefect worker start --pool P` on as many
machines as you like; `prefect.yaml` declares the one-model case for `prefect deploy --all`. Each
nightly deployment has a concurrency limit of 1: a pool never starts two runs of one model at
once (scheduling; what keeps a day's result whole is the lake's day lock). A long backfill fans
out as one flow run per chunk of days (`submit_backfill_chunks`), each with an idempotency key.

With `slices=N` (`deploy --slices N`) the served models are dealt into N slices in name order
(`tasks.day.fleet.split`) and each slice gets one nightly fleet deployment, `fleet/fleet-1-of-N`
...: one flow run a night maps the slice's models as tasks, instead of one flow run per model
(`driftline serve --slices N` serves the same). The per-model deployments are then not registered
(each model would run twice a night); `driftline monitor --model` still runs one model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import serve as prefect_serve
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL

from core.errors import InputError
from core.settings import DEFAULT_MODEL, NIGHTLY_CRON, REPO_ROOT, served_models
from flows.backfill import backfill
from flows.fleet import fleet
from flows.monitor import monitor
from tasks.day.fleet import slice_name, split

TIMEZONE = "UTC"
BACKFILL_DEPLOYMENT = "backfill/backfill"
DEFAULT_POOL = "driftline"
# runs of one model's nightly deployment at a time: a second one waits (Prefect's ENQUEUE)
NIGHTLY_CONCURRENCY_LIMIT = 1


def nightly_name(model: str) -> str:
    return f"monitor-{model}"


def deployments(models: Sequence[str], *, slices: int | None = None) -> list[RunnerDeployment]:
    """The nightly monitor of every model at 02:00 UTC (or, with `slices`, of every slice of
    models), and one backfill with parameters."""
    if slices is not None:
        nightly = fleet_deployments(models, slices)
    else:
        nightly = [
            monitor.to_deployment(
                name=nightly_name(model),
                schedules=[Cron(NIGHTLY_CRON, timezone=TIMEZONE)],
                parameters={"model": model},
                description=f"Nightly drift and performance of {model}: yesterday's batch (UTC).",
                tags=["driftline", model],
                concurrency_limit=NIGHTLY_CONCURRENCY_LIMIT,
            )
            for model in models
        ]
    replay = backfill.to_deployment(
        name="backfill",
        parameters={"model": models[0]},
        description="Replay the nightly run for start..end; export history at event time.",
        tags=["driftline"],
    )
    # to_deployment is typed sync-or-async; called outside an event loop it is sync
    return cast(list[RunnerDeployment], [*nightly, replay])


def fleet_deployments(models: Sequence[str], slices: int) -> list[Any]:
    """One nightly fleet deployment per slice of `models` that has any (a slice's models are
    its parameters, shown in the UI; deploying again after adding models updates them)."""
    return [
        fleet.to_deployment(
            name=slice_name(index, slices),
            schedules=[Cron(NIGHTLY_CRON, timezone=TIMEZONE)],
            parameters={"models": names, "name": slice_name(index, slices)},
            description=(
                f"Nightly drift and performance of {len(names)} model(s), slice {index + 1} of "
                f"{slices}: yesterday's batch (UTC), one task per model."
            ),
            tags=["driftline", "fleet"],
            concurrency_limit=NIGHTLY_CONCURRENCY_LIMIT,
        )
        for index, names in enumerate(split(models, slices))
        if names
    ]


def serve(models: Sequence[str] | None = None, *, slices: int | None = None) -> None:
    """Run the deployments on their schedules in this process until interrupted: each
    model's nightly monitor, or with `slices` one nightly fleet run per slice of the models."""
    prefect_serve(*deployments(models or served_models(), slices=slices))


@dataclass(frozen=True)
class Deployed:
    """One deployment registered in a work pool."""

    name: str  # flow/deployment
    id: UUID
    concurrency_limit: int | None


def pull_steps(directory: Path) -> list[dict[str, Any]]:
    """What a worker does before loading the flow: work in the driftline checkout at
    `directory` (as `prefect deploy` does from prefect.yaml). Workers on other machines need the
    checkout at the same path, or a `--directory` naming theirs."""
    return [{"prefect.deployments.steps.set_working_directory": {"directory": str(directory)}}]


def ensure_process_pool(pool: str) -> bool:
    """Create `pool` as a process work pool unless it exists; return whether it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(
            WorkPoolCreate(
                name=pool,
                type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="driftline: the nightly monitor of every model, and backfills",
            )
        )
        return True


def deploy_to_pool(
    models: Sequence[str],
    pool: str = DEFAULT_POOL,
    *,
    directory: Path = REPO_ROOT,
    slices: int | None = None,
) -> list[Deployed]:
    """Register `deployments(models, slices=slices)` in the work pool `pool` (created if
    missing, as a process pool). Deploying again updates them in place (same names, same ids)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.utilities.callables import parameter_schema

    ensure_process_pool(pool)
    flows: dict[str, Callable[..., Any]] = {
        "monitor": monitor,
        "backfill": backfill,
        "fleet": fleet,
    }
    done = []
    with get_client(sync_client=True) as client:
        flow_ids = {name: client.create_flow_from_name(name) for name in flows}
        schemas = {
            name: parameter_schema(f).model_dump(exclude_unset=True) for name, f in flows.items()
        }
        for d in deployments(models, slices=slices):
            flow = str(d.flow_name)
            deployment_id = client.create_deployment(
                flow_id=flow_ids[flow],
                name=d.name,
                work_pool_name=pool,
                schedules=[DeploymentScheduleCreate(**s.model_dump()) for s in d.schedules or []],
                concurrency_limit=d.concurrency_limit,
                concurrency_options=d.concurrency_options,
                parameters=d.parameters,
                description=d.description,
                tags=d.tags,
                entrypoint=d.entrypoint,
                path=None,
                pull_steps=pull_steps(directory),
                parameter_openapi_schema=schemas[flow],
                enforce_parameter_schema=True,
                job_variables={},
            )
            done.append(Deployed(d.full_name, deployment_id, d.concurrency_limit))
    return done


def chunks(start: date, end: date, chunk_days: int) -> list[tuple[date, date]]:
    """start..end cut into consecutive ranges of at most `chunk_days` days."""
    if chunk_days < 1:
        raise InputError(f"chunk_days must be at least 1 (got {chunk_days})")
    if end < start:
        raise InputError(f"end {end} is before start {start}; pass a range with start <= end")
    out = []
    first = start
    while first <= end:
        last = min(first + timedelta(days=chunk_days - 1), end)
        out.append((first, last))
        first = last + timedelta(days=1)
    return out


def submit_backfill_chunks(
    model: str,
    start: date,
    end: date,
    *,
    chunk_days: int = 30,
    request_id: str | None = None,
    deployment: str = BACKFILL_DEPLOYMENT,
    prometheus_data: str | None = None,
) -> list[FlowRun]:
    """One backfill flow run per chunk of days, for any worker of the pool to pick up.

    Each run's idempotency key is (request, model, chunk): asking again with the same request id
    returns the runs already created instead of adding new ones. The request id defaults to
    today's date, so a repeated request on the same day is a no-op and a new day's is new work.
    """
    request = request_id or date.today().isoformat()
    runs = []
    for first, last in chunks(start, end, chunk_days):
        parameters: dict[str, object] = {
            "model": model,
            "start": first.isoformat(),
            "end": last.isoformat(),
        }
        if prometheus_data:
            parameters["prometheus_data"] = prometheus_data
        runs.append(
            run_deployment(
                deployment,
                parameters=parameters,
                flow_run_name=f"backfill-{model}-{first}-{last}",
                idempotency_key=f"backfill:{request}:{model}:{first}:{last}",
                timeout=0,  # create the run and return; workers execute it
                as_subflow=False,
            )
        )
    return cast(list[FlowRun], runs)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m flows.deployments deploy [--pool P] [--models a,b]` and
    `python -m flows.deployments submit-backfill --start D --end D [--chunk-days N]`."""
    parser = argparse.ArgumentParser(prog="python -m flows.deployments")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "deploy",
        help="create the process work pool and deploy every model's nightly run and the backfill",
    )
    d.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool (default {DEFAULT_POOL})")
    d.add_argument(
        "--models", help="comma-separated models (default: DRIFTLINE_MODELS, else diamonds-price)"
    )
    d.add_argument(
        "--slices",
        type=int,
        help="deploy the models as N nightly fleet runs (one task per model) instead of one "
        "nightly run per model",
    )
    d.add_argument(
        "--directory",
        type=Path,
        default=REPO_ROOT,
        help="the driftline checkout workers run the flows from (default: this one)",
    )
    p = sub.add_parser("submit-backfill", help="one backfill flow run per chunk of days")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--start", type=date.fromisoformat, required=True)
    p.add_argument("--end", type=date.fromisoformat, required=True)
    p.add_argument("--chunk-days", type=int, default=30)
    p.add_argument("--request-id", help="same id, same runs (default: today's date)")
    p.add_argument("--prometheus-data", help="data dir each chunk writes its history into")
    args = parser.parse_args(argv)
    if not PREFECT_API_URL.value():  # the environment or the active Prefect profile
        print(
            "python -m flows.deployments: error: PREFECT_API_URL is not set; point it at your "
            "Prefect server (e.g. http://127.0.0.1:4200/api after `driftline stack up`)",
            file=sys.stderr,
        )
        return 2
    if args.command == "deploy":
        try:
            models = served_models(
                {"DRIFTLINE_MODELS": args.models} if args.models is not None else None
            )
        except InputError as error:
            print(f"python -m flows.deployments: error: {error}", file=sys.stderr)
            return 2
        if args.slices is not None and args.slices < 1:
            print(f"python -m flows.deployments: error: --slices must be at least 1 (got "
                  f"{args.slices})", file=sys.stderr)  # fmt: skip
            return 2
        created = ensure_process_pool(args.pool)
        print(f"work pool {args.pool} (process): {'created' if created else 'exists'}")
        for deployed in deploy_to_pool(
            models, args.pool, directory=args.directory.resolve(), slices=args.slices
        ):
            limit = deployed.concurrency_limit
            print(f"{deployed.name} {deployed.id} concurrency limit {limit or 'none'}")
        print(f"start workers with: prefect worker start --pool {args.pool} --type process")
        return 0
    for run in submit_backfill_chunks(
        args.model,
        args.start,
        args.end,
        chunk_days=args.chunk_days,
        request_id=args.request_id,
        prometheus_data=args.prometheus_data,
    ):
        print(f"{run.name} {run.id} {run.state_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

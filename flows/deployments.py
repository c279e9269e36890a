"""Prefect deployments: the nightly monitor of each configured model, and the backfill.

`serve()` runs them in this process with `prefect.serve` (no work pool); `prefect.yaml` declares
the same deployments for `prefect deploy --all` and process workers. A long backfill fans out as
one flow run per chunk of days (`submit_backfill_chunks`), each created with an idempotency key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from typing import cast

from prefect import serve as prefect_serve
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from core.errors import InputError
from core.settings import DEFAULT_MODEL, served_models
from flows.backfill import backfill
from flows.monitor import monitor

NIGHTLY_CRON = "0 2 * * *"  # the run for day D at D+1 02:00; history is stamped the same way
TIMEZONE = "UTC"
BACKFILL_DEPLOYMENT = "backfill/backfill"


def nightly_name(model: str) -> str:
    return f"monitor-{model}"


def deployments(models: Sequence[str]) -> list[RunnerDeployment]:
    """The nightly monitor of every model at 02:00 UTC, and one backfill with parameters."""
    nightly = [
        monitor.to_deployment(
            name=nightly_name(model),
            schedules=[Cron(NIGHTLY_CRON, timezone=TIMEZONE)],
            parameters={"model": model},
            description=f"Nightly drift and performance of {model}: yesterday's batch (UTC).",
            tags=["driftline", model],
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


def serve(models: Sequence[str] | None = None) -> None:
    """Run the deployments on their schedules in this process until interrupted."""
    prefect_serve(*deployments(models or served_models()))


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
    """`python -m flows.deployments submit-backfill --start D --end D [--chunk-days N]`."""
    parser = argparse.ArgumentParser(prog="python -m flows.deployments")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit-backfill", help="one backfill flow run per chunk of days")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--start", type=date.fromisoformat, required=True)
    p.add_argument("--end", type=date.fromisoformat, required=True)
    p.add_argument("--chunk-days", type=int, default=30)
    p.add_argument("--request-id", help="same id, same runs (default: today's date)")
    p.add_argument("--prometheus-data", help="data dir each chunk writes its history into")
    args = parser.parse_args(argv)
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

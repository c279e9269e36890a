"""The fleet flow: one batch day of a slice of models, one mapped task per model."""

from __future__ import annotations

import time
from datetime import date
from typing import Any, cast

from prefect import flow, unmapped
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from core.settings import load_settings
from flows.monitor import yesterday_utc
from tasks.day import fleet_steps as steps
from tasks.day.fleet import checked_models
from tasks.edge.validation import check_batch_date
from tasks.results.fleet import FleetReport

# models monitored at once in one fleet run: the work is mostly numpy and Arrow, which share one
# interpreter's GIL, so two threads keep a core busy while the other waits on files or the push
FLEET_THREADS = 2


def _run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return f"{params.get('name') or 'fleet'}-{params.get('batch_date') or yesterday_utc()}"


@flow(
    name="fleet",
    flow_run_name=_run_name,
    # Prefect types the flow's runner as one of plain futures; the thread pool's are a subclass
    task_runner=cast(
        TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=FLEET_THREADS)
    ),
    log_prints=False,
)
def fleet(
    models: list[str],
    batch_date: date | None = None,
    push: bool = True,
    name: str = "fleet",
) -> State[FleetReport]:
    """Drift and performance of every model of `models` for `batch_date` (default: yesterday,
    UTC), each on its own: a model that fails is named in the final state, the others finish."""
    started = time.perf_counter()
    day = check_batch_date(batch_date or yesterday_utc())
    settings = load_settings(push=push)
    names = checked_models(models)
    futures = steps.monitor_model.map(unmapped(settings), names, unmapped(day), unmapped(push))
    nights = steps.wait_for_models(settings, futures, names, day)
    report = steps.finish(name, day, nights, started)
    steps.publish_report(report)
    return steps.final_state(report)

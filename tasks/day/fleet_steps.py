"""The fleet's Prefect tasks: one task per model (its whole night, retried only on I/O), and
the slice's report, final state and summary artifact."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, Failed

from core.errors import DriftlineError
from core.settings import IO_RETRY_DELAYS_SECONDS, Settings
from tasks.day import fleet
from tasks.day.failure import failure_pushed
from tasks.day.steps import io_failure, run_warning
from tasks.day.wrappers import artifact_key, compute_task
from tasks.reports.fleet import fleet_head, fleet_markdown, fleet_message
from tasks.results.fleet import FleetReport, ModelNight


def _model_run_name() -> str:
    from prefect.runtime import task_run

    return f"monitor-{task_run.parameters['model']}-{task_run.parameters['batch_date']}"


def storage_failing(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a model's night only when storage failed (the lake, the registry): bad input, a
    missing model and driftline's own errors fail the same way again, and so does a bug."""
    error = getattr(state.data, "result", state.data)  # a result record holds the exception
    return isinstance(error, OSError)


def _tried_again(error: BaseException) -> bool:
    """Prefect runs this model's night again after `error`: storage failed, attempts are left."""
    context = TaskRunContext.get()
    return (
        isinstance(error, OSError)
        and context is not None
        and context.task_run.run_count <= context.task.retries
    )


@task(
    name="monitor-model",
    task_run_name=_model_run_name,
    retries=len(IO_RETRY_DELAYS_SECONDS),
    retry_delay_seconds=list(IO_RETRY_DELAYS_SECONDS),
    retry_condition_fn=storage_failing,
    cache_policy=NO_CACHE,
)
def monitor_model(
    settings: Settings, model: str, batch_date: date, push: bool
) -> ModelNight | State[Any]:
    """One model's night; one that cannot run ends Failed with its one line, no traceback, and
    (after its last attempt) its failure pushed into the model's group."""
    logger = get_run_logger()
    try:
        with failure_pushed(
            settings, model, batch_date, push=push, warn=run_warning, tried_again=_tried_again
        ) as attempt:
            night = fleet.monitor_model(settings, model, batch_date, push=push, attempt=attempt)
    except DriftlineError as exc:
        logger.error("%s %s failed: %s", model, batch_date, exc)
        return Failed(message=str(exc), data=exc)
    result = night.result
    assert result is not None
    logger.info(
        "%s %s: %d rows, drifted: %s%s",
        model,
        batch_date,
        result.n_rows,
        ", ".join(result.drifted_features) or "none",
        ", pushed" if push else "",
    )
    return night


def wait_for_models(
    settings: Settings,
    futures: Sequence[PrefectFuture[Any]],
    models: Sequence[str],
    batch_date: date,
) -> list[ModelNight]:
    """Every model's night as it finishes; a failed one with the line its own run would print."""
    model_of = {future.task_run_id: m for future, m in zip(futures, models, strict=True)}
    nights = []
    for future in as_completed(list(futures)):
        model = model_of[future.task_run_id]
        value = future.result(raise_on_failure=False)
        if isinstance(value, ModelNight):
            nights.append(value)
            continue
        if isinstance(value, OSError):  # storage, through every retry
            value = io_failure(settings, model, batch_date, value)
        reason = (
            str(value) if isinstance(value, DriftlineError) else f"{type(value).__name__}: {value}"
        )
        nights.append(fleet.failed_night(model, batch_date, reason))
    return nights


def finish(
    name: str, batch_date: date, nights: Sequence[ModelNight], started: float
) -> FleetReport:
    """The slice's report, its head line and every failed model in the run's log."""
    report = FleetReport.of(name, batch_date, nights, time.perf_counter() - started)
    logger = get_run_logger()
    (logger.error if report.failed else logger.info)(fleet_head(report))
    return report


@compute_task("publish-fleet-summary")
def publish_report(report: FleetReport) -> None:
    create_markdown_artifact(
        key=artifact_key("summary", report.name),  # summary-fleet-1-of-4, as summary-<model>
        markdown=fleet_markdown(report),
        description=f"{report.name}: {len(report.nights)} model(s), batch {report.batch_date}",
    )


def final_state(report: FleetReport) -> State[FleetReport]:
    """Completed when every model's night did; else Failed, naming each failed model (after
    all the others finished, their results written and pushed)."""
    if report.failed:
        return Failed(message=fleet_message(report), data=report)
    return Completed(message=fleet_head(report), data=report)

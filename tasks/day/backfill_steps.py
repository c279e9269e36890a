"""The backfill's Prefect tasks: each wraps a plain function with a name, retries on I/O, logging;
and the progress a person watches while the days run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Failed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import DriftlineError, InputError
from core.settings import Settings
from data_lake.lake import Lake
from tasks.day import backfill
from tasks.day.backfill import ReplayedDay
from tasks.day.inputs import ModelContext
from tasks.day.wrappers import artifact_key, compute_task, io_task
from tasks.export import history
from tasks.performance.window import Window
from tasks.reports.backfill import backfill_lines, backfill_markdown
from tasks.results.backfill import BackfillReport, DayOutcome


def _replay_name() -> str:
    from prefect.runtime import task_run

    return f"replay-{task_run.parameters['batch_date']}"


@io_task("replay-day", task_run_name=_replay_name)
def replay(
    settings: Settings, context: ModelContext, window: Window, batch_date: date
) -> ReplayedDay | State[Any]:
    """One day read and computed; a day that cannot run ends Failed, quietly."""
    try:
        return backfill.replay(
            Lake.open(settings.data_lake_uri), context, window, batch_date, settings
        )
    except DriftlineError as exc:
        # bad input or a missing batch: one line that says what to do, no traceback, no retry
        get_run_logger().error("%s failed: %s", batch_date, exc)
        return Failed(message=str(exc), data=exc)


def wait_for_days(
    futures: Sequence[PrefectFuture[Any]], days: Sequence[date], *, model: str
) -> tuple[list[ReplayedDay], list[DayOutcome]]:
    """Collect the days as they finish (a bar on stderr, a line in the run's log every tenth):
    those computed, and those that failed."""
    logger = get_run_logger()
    day_of = {future.task_run_id: day for future, day in zip(futures, days, strict=True)}
    replayed: list[ReplayedDay] = []
    failed: list[DayOutcome] = []
    every = max(1, len(futures) // 10)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        # leave stdout alone: the command prints its report there after the bar
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        bar = progress.add_task(f"backfill {model}", total=len(futures), failed=0)
        for done, future in enumerate(as_completed(list(futures)), start=1):
            value = future.result(raise_on_failure=False)
            if isinstance(value, ReplayedDay):
                replayed.append(value)
            else:
                error = value if isinstance(value, BaseException) else RuntimeError(str(value))
                failed.append(backfill.failed_day(day_of[future.task_run_id], error))
            progress.update(bar, advance=1, failed=len(failed))
            if done % every == 0 or done == len(futures):
                logger.info("%d/%d days replayed, %d failed", done, len(futures), len(failed))
    return replayed, failed


@io_task("write-days")
def write_days(
    settings: Settings, replayed: Sequence[ReplayedDay], failed: Sequence[DayOutcome]
) -> list[DayOutcome]:
    """The computed days written in date order; with those that failed, every day's outcome."""
    outcomes = backfill.write_replayed(Lake.open(settings.data_lake_uri), replayed, settings)
    logger = get_run_logger()
    for outcome in outcomes:
        if outcome.failure is not None:
            logger.error("%s failed: %s", outcome.batch_date, outcome.failure)
    logger.info("%d day(s) written", sum(o.result is not None for o in outcomes))
    return sorted([*outcomes, *failed], key=lambda o: o.batch_date)


@compute_task("export-history")
def export_history(
    settings: Settings,
    model: str,
    outcomes: Sequence[DayOutcome],
    *,
    prometheus_data: str | None,
    openmetrics: str | None,
) -> str | None:
    """The replayed days' gauges at event time: an OpenMetrics file, or blocks in a data dir."""
    if prometheus_data and openmetrics:
        raise InputError("pass --prometheus-data or --openmetrics, not both")
    if not (prometheus_data or openmetrics):
        return None
    runs = [history.PastRun(o.result, o.duration_seconds) for o in outcomes if o.result is not None]
    if not runs:
        get_run_logger().warning("no day succeeded: no history to export")
        return None
    payload = history.openmetrics_text(history.history_families(runs))
    logger = get_run_logger()
    if openmetrics:
        history.write_openmetrics(Path(openmetrics), payload)
        logger.info("history of %d day(s) written to %s", len(runs), openmetrics)
        return f"OpenMetrics file {openmetrics}"
    data_dir = Path(str(prometheus_data))
    cleared = history.clear_days(
        settings.prometheus_url, model, [run.result.batch_date for run in runs]
    )
    logger.info(cleared)
    with tempfile.TemporaryDirectory(prefix="driftline-history-") as tmp:
        file = Path(tmp) / "history.om.txt"
        file.write_bytes(payload)
        blocks = history.create_blocks(file, data_dir)
    logger.info("history of %d day(s): %d TSDB block(s) in %s", len(runs), len(blocks), data_dir)
    return f"{len(blocks)} TSDB block(s) in {data_dir}"


def finish(
    model: str,
    start: date,
    end: date,
    outcomes: list[DayOutcome],
    history_written: str | None,
    started: float,
) -> BackfillReport:
    """The report, with every failed day and its reason listed in the run's log."""
    report = BackfillReport.of(
        model, start, end, outcomes, history_written, time.perf_counter() - started
    )
    logger = get_run_logger()
    head, *rest = backfill_lines(report)
    (logger.warning if report.failed else logger.info)(head)
    for line in rest:
        logger.info(line.strip())
    return report


@compute_task("publish-backfill-summary")
def publish_report(report: BackfillReport) -> None:
    create_markdown_artifact(
        key=artifact_key("backfill", report.model),
        markdown=backfill_markdown(report),
        description=f"Backfill of {report.model}, {report.start} to {report.end}",
    )

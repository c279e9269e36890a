"""The backfill flow: the nightly run replayed for every day of a range, and its history."""

from __future__ import annotations

import time
from datetime import date

from prefect import flow, unmapped

from core.settings import DEFAULT_MODEL, load_settings
from tasks.day import backfill_steps as steps
from tasks.day.backfill import days_between
from tasks.day.steps import load_model, load_window
from tasks.results.backfill import BackfillReport


@flow(
    name="backfill",
    flow_run_name="backfill-{model}-{start}-{end}",
    log_prints=False,
)
def backfill(
    start: date,
    end: date,
    model: str = DEFAULT_MODEL,
    prometheus_data: str | None = None,
    openmetrics: str | None = None,
) -> BackfillReport:
    """Replay `model`'s nightly run for start..end (both included); export the history to a
    Prometheus data directory or an OpenMetrics file when one is given."""
    started = time.perf_counter()
    settings = load_settings(push=False)
    days = days_between(start, end)
    context = load_model(settings, model)
    window = load_window(settings, context, start, end)
    futures = steps.replay.map(unmapped(settings), unmapped(context), unmapped(window), days)
    replayed, failed = steps.wait_for_days(futures, days, model=model)
    outcomes = steps.write_days(settings, replayed, failed)
    written = steps.export_history(
        settings, model, outcomes, prometheus_data=prometheus_data, openmetrics=openmetrics
    )
    report = steps.finish(model, start, end, outcomes, written, started)
    steps.publish_report(report)
    return report

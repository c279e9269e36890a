"""The backfill flow: the nightly run replayed for every day of a range, and its history."""

from __future__ import annotations

import time
from datetime import date

from prefect import flow, unmapped

from driftline.settings import DEFAULT_MODEL, load_settings
from tasks import backfill as bf
from tasks import steps
from tasks.backfill import BackfillReport


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
    settings = load_settings()
    days = bf.days_between(start, end)
    context = steps.load_model(settings, model)
    inputs = bf.load_inputs(settings, context, start, end)
    futures = bf.replay.map(unmapped(settings), unmapped(context), unmapped(inputs), days)
    outcomes = bf.wait_for_days(futures, days, model=model)
    written = bf.export_history(
        settings, model, outcomes, prometheus_data=prometheus_data, openmetrics=openmetrics
    )
    report = bf.finish(model, start, end, outcomes, written, started)
    bf.publish_report(report)
    return report

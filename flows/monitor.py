"""The nightly monitor flow: one batch day of one model."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from prefect import flow
from prefect.runtime import flow_run

from core.settings import DEFAULT_MODEL, load_settings
from tasks.day import steps
from tasks.day.failure import failure_pushed
from tasks.edge.validation import check_batch_date
from tasks.results.day import MonitoringResult


def yesterday_utc() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _run_name() -> str:
    params = flow_run.parameters
    return f"monitor-{params['model']}-{params.get('batch_date') or yesterday_utc()}"


@flow(name="monitor", flow_run_name=_run_name, log_prints=False)
def monitor(
    model: str = DEFAULT_MODEL,
    batch_date: date | None = None,
    push: bool = True,
) -> MonitoringResult:
    """Drift and performance of `model` for `batch_date` (default: yesterday, UTC)."""
    started = time.time()
    day = check_batch_date(batch_date or yesterday_utc())
    settings = load_settings(push=push)
    with (
        failure_pushed(settings, model, day, push=push, warn=steps.run_warning) as attempt,
        steps.io_failures_reported(settings, model, day),
    ):
        context = steps.load_model(settings, model)
        attempt.model_version = context.card.version
        batch = steps.load_batch(settings, context, day)
        window = steps.load_window(settings, context, day, day, current=batch)
        computed = steps.compute_day(settings, context, day, batch, window)
        # reading and computing may overlap; writing and pushing a day is one run at a time,
        # so the lake's result and the pushed gauges always come from the same run
        with steps.day_lock(settings, model, day):
            written = steps.write_day(settings, computed)
            steps.publish_artifacts(written)
            if push:
                steps.push_metrics_or_fail(settings, written, started)
    return written.result

"""Backfill: the nightly run replayed for a range of days, from the range's inputs read once.

Every day runs `tasks.day.engine.monitor_day` on one `tasks.performance.window.Window` of the whole
range, the engine the nightly run uses for its own window, and writes its result where and as the
nightly run writes it, under the same per-day lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

from core.errors import DriftlineError, InputError
from core.settings import Settings
from data_lake.lake import Lake
from tasks.day.engine import ModelContext, monitor_day
from tasks.performance.window import Window
from tasks.reports import day as reports
from tasks.results.day import MonitoringResult, to_json
from tasks.stats.batch_drift import DriftOutcome

MAX_BACKFILL_DAYS = 3660


def days_between(start: date, end: date) -> list[date]:
    """Every day from `start` to `end`, both included."""
    if end < start:
        raise InputError(f"--end {end} is before --start {start}; pass a range with start <= end")
    days = (end - start).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise InputError(
            f"range {start}..{end} has {days} days, more than {MAX_BACKFILL_DAYS}; "
            "split it into smaller ranges"
        )
    return [start + timedelta(days=i) for i in range(days)]


@dataclass(frozen=True)
class DayOutcome:
    """One replayed day: its result, or why it failed; and how long it took."""

    batch_date: date
    result: MonitoringResult | None
    failure: str | None
    duration_seconds: float


def replay_and_write(
    lake: Lake, context: ModelContext, window: Window, batch_date: date, settings: Settings
) -> DayOutcome:
    """Replay one day and write its result and its report where the nightly run writes them."""
    started = time.perf_counter()
    drift: list[DriftOutcome] = []
    result = monitor_day(
        lake, context, batch_date, settings, window=window, keep_drift=drift.append
    )
    report = reports.DayReport.draw(result, drift[0].sketches, settings.drift_rule).html()
    # the nightly run's lock: a backfill never interleaves with a run of the same day
    with lake.day_lock(
        result.model,
        result.batch_date,
        purpose=f"backfill {result.model} {result.batch_date}",
        policy=settings.lock_policy,
    ):
        lake.write_bytes(lake.result_path(result.model, result.batch_date), to_json(result))
        lake.write_bytes(lake.report_path(result.model, result.batch_date), report.encode())
    return DayOutcome(batch_date, result, None, time.perf_counter() - started)


def failed_day(batch_date: date, error: BaseException) -> DayOutcome:
    """A day that could not run; driftline's own errors already say what to do."""
    reason = str(error) if isinstance(error, DriftlineError) else f"{type(error).__name__}: {error}"
    return DayOutcome(batch_date, None, reason, 0.0)

"""Backfill: the nightly run replayed for a range of days, from the range's inputs read once.

Every day runs the nightly run's engine (`tasks.day.engine.monitor_and_write`) on one
`tasks.performance.window.Window` of the whole range, and writes its result and report where and
as the nightly run writes them, under the same per-day lock.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

from core.errors import DriftlineError, InputError
from core.settings import Settings
from data_lake.lake import Lake
from tasks.day.engine import ModelContext, monitor_and_write
from tasks.performance.window import Window
from tasks.results.backfill import DayOutcome

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


def replay_and_write(
    lake: Lake, context: ModelContext, window: Window, batch_date: date, settings: Settings
) -> DayOutcome:
    """Replay one day from the range's window, and write it as the nightly run writes it,
    under the same lock: a backfill never interleaves with a run of the same day."""
    started = time.perf_counter()
    written = monitor_and_write(
        lake, context, batch_date, settings, window=window, purpose="backfill"
    )
    return DayOutcome(batch_date, written.result, None, time.perf_counter() - started)


def failed_day(batch_date: date, error: BaseException) -> DayOutcome:
    """A day that could not run; driftline's own errors already say what to do."""
    reason = str(error) if isinstance(error, DriftlineError) else f"{type(error).__name__}: {error}"
    return DayOutcome(batch_date, None, reason, 0.0)

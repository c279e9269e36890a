"""Backfill: the nightly run replayed for a range of days, from the range's inputs read once.

Every day is read and computed by the nightly run's engine (`tasks.day.engine.run_day`) on one
`tasks.performance.window.Window` of the whole range, the days side by side; then the days are
written in date order (`tasks.day.engine.write_day`), where and as the nightly run writes them,
each under the same per-day lock, so that drift that must persist over several days counts the
range's own earlier days as the nightly runs would have.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from core.errors import DriftlineError, InputError
from core.settings import Settings
from data_lake.lake import Lake
from tasks.day.engine import ComputedDay, run_day, write_day
from tasks.day.inputs import ModelContext
from tasks.day.persistence import earlier_days, stored_verdicts
from tasks.day.window_read import remember_estimates
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


@dataclass(frozen=True)
class ReplayedDay:
    """One day read and computed, not yet written; and how long that took."""

    day: ComputedDay
    duration_seconds: float


def replay(
    lake: Lake, context: ModelContext, window: Window, batch_date: date, settings: Settings
) -> ReplayedDay:
    """Read and compute one day from the range's window."""
    started = time.perf_counter()
    day = run_day(lake, context, batch_date, settings, window=window)
    return ReplayedDay(day, time.perf_counter() - started)


def write_replayed(
    lake: Lake, replayed: Sequence[ReplayedDay], settings: Settings
) -> list[DayOutcome]:
    """Write the days in date order, each under the nightly run's lock (a backfill never
    interleaves with a run of the same day); a day that cannot be written fails alone."""
    verdicts = {r.day.result.batch_date: frozenset(r.day.result.drifted_features) for r in replayed}
    outcomes = []
    for item in sorted(replayed, key=lambda r: r.day.result.batch_date):
        started = time.perf_counter()
        result = item.day.result
        try:
            earlier = None
            if item.day.persistence.of > 1:
                days = earlier_days(result.batch_date, item.day.persistence)
                stored = stored_verdicts(lake, result.model, [d for d in days if d not in verdicts])
                earlier = {**stored, **{d: verdicts[d] for d in days if d in verdicts}}
            with lake.day_lock(
                result.model,
                result.batch_date,
                purpose=f"backfill {result.model} {result.batch_date}",
                policy=settings.lock_policy,
            ):
                written = write_day(lake, item.day, earlier=earlier)
        except DriftlineError as exc:
            outcomes.append(failed_day(result.batch_date, exc))
            continue
        seconds = item.duration_seconds + time.perf_counter() - started
        outcomes.append(DayOutcome(result.batch_date, written.result, None, seconds))
    # the state the range's window read left, given the batches' estimates for later nights
    context = next((r.day.context for r in replayed if r.day.context is not None), None)
    if context is not None:
        estimates = {r.day.result.batch_date: r.day.result.estimate for r in replayed}
        remember_estimates(lake, context.card, estimates)
    return outcomes


def failed_day(batch_date: date, error: BaseException) -> DayOutcome:
    """A day that could not run; driftline's own errors already say what to do."""
    reason = str(error) if isinstance(error, DriftlineError) else f"{type(error).__name__}: {error}"
    return DayOutcome(batch_date, None, reason, 0.0)

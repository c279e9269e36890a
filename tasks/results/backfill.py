"""What a backfill did: each replayed day's outcome, and the whole range's report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tasks.results.day import MonitoringResult


@dataclass(frozen=True)
class DayOutcome:
    """One replayed day: its result, or why it failed; and how long it took."""

    batch_date: date
    result: MonitoringResult | None
    failure: str | None
    duration_seconds: float


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did: the days replayed, those that failed and why, where history went."""

    model: str
    start: date
    end: date
    succeeded: tuple[date, ...]
    failed: tuple[tuple[date, str], ...]
    history: str | None
    duration_seconds: float

    @classmethod
    def of(
        cls,
        model: str,
        start: date,
        end: date,
        outcomes: list[DayOutcome],
        history: str | None,
        duration_seconds: float,
    ) -> BackfillReport:
        return cls(
            model=model,
            start=start,
            end=end,
            succeeded=tuple(o.batch_date for o in outcomes if o.result is not None),
            failed=tuple((o.batch_date, o.failure) for o in outcomes if o.failure is not None),
            history=history,
            duration_seconds=duration_seconds,
        )

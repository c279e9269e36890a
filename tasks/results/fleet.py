"""What a fleet run did: each model's night, and the slice's report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from tasks.results.day import MonitoringResult


@dataclass(frozen=True)
class ModelNight:
    """One model's night in a fleet run: its result and where it went, or why it failed."""

    model: str
    batch_date: date
    result: MonitoringResult | None
    failure: str | None
    duration_seconds: float
    report_uri: str | None = None


@dataclass(frozen=True)
class FleetReport:
    """A slice's night: the models monitored, those that failed and why."""

    name: str
    batch_date: date
    nights: tuple[ModelNight, ...]
    duration_seconds: float

    @classmethod
    def of(
        cls, name: str, batch_date: date, nights: Sequence[ModelNight], duration_seconds: float
    ) -> FleetReport:
        return cls(name, batch_date, tuple(sorted(nights, key=lambda n: n.model)), duration_seconds)

    @property
    def succeeded(self) -> tuple[str, ...]:
        return tuple(n.model for n in self.nights if n.failure is None)

    @property
    def failed(self) -> tuple[tuple[str, str], ...]:
        return tuple((n.model, n.failure) for n in self.nights if n.failure is not None)

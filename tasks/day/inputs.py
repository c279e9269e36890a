"""What a day reads: the model version's context (card, profile, estimators, policy), the day's
validated batch and the performance window of scored batches and labels, each file read once."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import pyarrow as pa

from core.errors import DriftlineError
from core.policy import Policy
from core.settings import Settings
from data_lake.columns import PREDICTION, ROW_ID
from data_lake.lake import Lake
from model_registry.policies import current_policy
from model_registry.registry import ModelCard, Registry
from tasks.edge.calibration_file import CALIBRATION_FILE, load_calibration
from tasks.edge.class_columns import probability_columns
from tasks.edge.estimator_file import loss_estimator_loader
from tasks.edge.profile_file import PROFILE_FILE, load_profile
from tasks.edge.validation import (
    ValidatedBatch,
    validate_batch,
    validate_labels,
    validate_scored_ids,
)
from tasks.performance.cbpe import Calibration
from tasks.performance.estimate import (
    LOSS_ESTIMATOR_FILE,
    LossEstimator,
    PerformanceEstimate,
)
from tasks.performance.window import Window, as_of, window_start
from tasks.stats.profile import ReferenceProfile

_READ_THREADS = 4
T = TypeVar("T")


def _no_estimator() -> LossEstimator | None:
    return None


class Estimates:
    """The estimates made with one version, by batch day. A plain class rather than a dict:
    mapped backfill tasks add to it while Prefect resolves the inputs of others, and Prefect
    walks a dict but not this."""

    def __init__(self) -> None:
        self._by_day: dict[date, PerformanceEstimate | None] = {}
        self._lock = threading.Lock()

    def __contains__(self, day: object) -> bool:
        with self._lock:
            return day in self._by_day

    def __getitem__(self, day: date) -> PerformanceEstimate | None:
        with self._lock:
            return self._by_day[day]

    def __setitem__(self, day: date, estimate: PerformanceEstimate | None) -> None:
        with self._lock:
            self._by_day[day] = estimate


@dataclass(frozen=True)
class ModelContext:
    card: ModelCard
    profile: ReferenceProfile
    # called once, by the estimate step: unpickling the estimator imports scikit-learn (about
    # half a second), which a run that stops at its batch never needs
    load_estimator: Callable[[], LossEstimator | None] = _no_estimator
    policy: Policy = field(default_factory=Policy)
    calibration: Calibration | None = None  # a classifier's CBPE (tasks/performance/cbpe.py)
    # the estimates made with this version, by batch day: a backfill's later nights check
    # their reported batch's band against them instead of estimating that batch again
    estimates: Estimates = field(default_factory=Estimates, compare=False, repr=False)

    @functools.cached_property
    def loss_estimator(self) -> LossEstimator | None:
        """The version's loss estimator; None when it had too few labelled reference rows."""
        return self.load_estimator()


def load_model_context(registry: Registry, model: str, version: str = "production") -> ModelContext:
    """The card and the reference profile, once every file of the version matches its card:
    the model file is not needed to monitor, but a tampered one stops the run all the same."""
    card = registry.card(model, version)
    # the profile and the loss estimator are checked as they are read (the estimator here,
    # unpickled later by the estimate step)
    registry.verify(card, besides=(PROFILE_FILE, LOSS_ESTIMATOR_FILE, CALIBRATION_FILE))
    # a classifier is estimated by CBPE from its probabilities (its calibration), not by a
    # loss estimator; a regressor has no calibration
    return ModelContext(
        card,
        load_profile(registry, card),
        _no_estimator if card.is_classifier else loss_estimator_loader(registry, card),
        current_policy(registry, model),
        load_calibration(registry, card),
    )


def read_batch(lake: Lake, card: ModelCard, batch_date: date) -> ValidatedBatch:
    table = lake.read_scored(card.name, batch_date)
    source = f"batch {batch_date} ({lake.uri_of(lake.scored_dir(card.name, batch_date))})"
    return validate_batch(table, card, source=source)


def read_window(
    lake: Lake,
    card: ModelCard,
    start: date,
    end: date,
    *,
    window_days: int,
    current: pa.Table | None = None,
) -> Window:
    """The predictions and labels that the runs for start..end need, each file read once.

    `current` is the batch of `end` (row_id, prediction) when the run already holds it. A file
    that is bad input fails only the days whose window reads it; an I/O error fails the read.
    """
    first = window_start(start, window_days)
    scored_days = [d for d in lake.scored_dates(card.name) if first <= d <= end]
    arrival_days = [d for d in lake.label_arrival_dates(card.name) if first < d <= as_of(end)]

    def read_scored(day: date) -> pa.Table:
        if current is not None and day == end:
            return current
        columns = [ROW_ID, PREDICTION, *probability_columns(card.classes)]
        table = lake.read_scored(card.name, day, columns=columns)
        source = f"batch {day} ({lake.uri_of(lake.scored_dir(card.name, day))})"
        return validate_scored_ids(table, source=source, classes=card.classes)

    def read_labels(day: date) -> list[pa.Table]:
        return [
            validate_labels(
                lake.read_parquet(path),
                target=card.target,
                source=lake.uri_of(path),
                classes=card.classes,
            )
            for path in lake.files(lake.labels_dir(card.name, day), ".parquet")
        ]

    scored, scored_errors = _read_days(read_scored, scored_days)
    labels, label_errors = _read_days(read_labels, arrival_days)
    return Window.build(
        model=card.name,
        window_days=window_days,
        target=card.target,
        scored=scored,
        labels=[(day, table) for day, tables in labels for table in tables],
        scored_errors=scored_errors,
        label_errors=label_errors,
        classes=card.classes,
    )


def day_window(
    lake: Lake, card: ModelCard, batch_date: date, settings: Settings, *, current: pa.Table
) -> Window:
    """The window the nightly run for `batch_date` reads: a range of one day, its own batch
    (row_id, prediction) already in hand."""
    return read_window(
        lake,
        card,
        batch_date,
        batch_date,
        window_days=settings.performance_window_days,
        current=current,
    )


def _read_days(
    read: Callable[[date], T], days: Sequence[date]
) -> tuple[list[tuple[date, T]], dict[date, DriftlineError]]:
    """`read` each day on a few threads (pyarrow reads release the GIL), in day order; bad
    input is kept per day, so it fails only the runs that need that day."""

    def attempt(day: date) -> tuple[date, T | DriftlineError]:
        try:
            return day, read(day)
        except DriftlineError as exc:
            return day, exc

    read_ok: list[tuple[date, T]] = []
    errors: dict[date, DriftlineError] = {}
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        for day, value in pool.map(attempt, days):
            if isinstance(value, DriftlineError):
                errors[day] = value
            else:
                read_ok.append((day, value))
    return read_ok, errors

"""What a day reads: the model version's context (card, profile, estimators, policy), the day's
validated batch and the performance window of scored batches and labels (tasks/day/window_read.py:
each file read once, and only the files the last night did not read)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

from core.policy import Policy
from core.settings import Settings
from data_lake.lake import Lake
from model_registry.policies import current_policy
from model_registry.registry import ModelCard, Registry
from tasks.day.window_read import read_window
from tasks.edge.calibration_file import CALIBRATION_FILE, load_calibration
from tasks.edge.estimator_file import loss_estimator_loader
from tasks.edge.profile_file import PROFILE_FILE, load_profile
from tasks.edge.validation import ValidatedBatch, validate_batch
from tasks.performance.cbpe import Calibration
from tasks.performance.estimate import (
    LOSS_ESTIMATOR_FILE,
    LossEstimator,
    PerformanceEstimate,
)
from tasks.performance.window import Window
from tasks.stats.profile import ReferenceProfile


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
    """The day's scored batch, read and validated; its categorical features' strings stay
    dictionary-encoded as Parquet stores them (counting them counts codes)."""
    categorical = [f.name for f in card.features if f.kind == "categorical"]
    table = lake.read_scored(card.name, batch_date, dictionary=categorical)
    source = f"batch {batch_date} ({lake.uri_of(lake.scored_dir(card.name, batch_date))})"
    return validate_batch(table, card, source=source)


def day_window(
    lake: Lake,
    card: ModelCard,
    batch_date: date,
    settings: Settings,
    *,
    current: pa.Table,
    current_estimate: PerformanceEstimate | None,
) -> Window:
    """The window the nightly run for `batch_date` reads: a range of one day, its own batch
    (row_id, prediction) already in hand, and the estimate the run made of it."""
    return read_window(
        lake,
        card,
        batch_date,
        batch_date,
        window_days=settings.performance_window_days,
        current=current,
        current_estimate=current_estimate,
    )

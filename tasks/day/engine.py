"""One engine for a batch day: read, compute, write and report it.

The nightly flow runs each of these functions as one Prefect task (tasks/day/steps.py); the
backfill and the Python API run them in-process, in the same order, through `monitor_and_write`.
So a day written by either is the same bytes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import pyarrow as pa

from core import faults
from core.errors import DriftlineError, RunError
from core.policy import Persistence, Policy
from core.settings import DriftRule, PushSettings, Settings
from data_lake.columns import PREDICTION, ROW_ID
from data_lake.lake import Lake
from model_registry.policies import current_policy
from model_registry.registry import ModelCard, Registry
from tasks.day.band import batch_estimate, with_band_check
from tasks.day.persistence import earlier_days, stored_verdicts, sustain
from tasks.day.quality import derived_expectations, quality_of
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
from tasks.export import pushgateway
from tasks.export.catalogue import RunStamp
from tasks.performance.cbpe import Calibration, ClassificationEstimate
from tasks.performance.classified_batch import class_shares, estimate_batch
from tasks.performance.estimate import (
    LOSS_ESTIMATOR_FILE,
    LossEstimator,
    PerformanceEstimate,
    estimate_performance,
)
from tasks.performance.window import PerformanceOutcome, Window, as_of, window_start
from tasks.quality.assess import QualityOutcome
from tasks.reports.day import DayReport
from tasks.results.day import MonitoringResult, to_json
from tasks.stats.batch_drift import DriftOutcome, drift_report
from tasks.stats.profile import ReferenceProfile
from tasks.stats.sketches import Sketch

_READ_THREADS = 4
T = TypeVar("T")


def _no_estimator() -> LossEstimator | None:
    return None


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
    estimates: dict[date, PerformanceEstimate | None] = field(
        default_factory=dict, compare=False, repr=False
    )

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


def assemble(
    context: ModelContext,
    batch_date: date,
    batch: ValidatedBatch,
    drift: DriftOutcome,
    performance: PerformanceOutcome,
    estimate: PerformanceEstimate | None = None,
    class_estimate: ClassificationEstimate | None = None,
    quality: QualityOutcome | None = None,
) -> MonitoringResult:
    card, policy = context.card, context.policy
    calibration = context.calibration
    quality = quality or QualityOutcome()
    return MonitoringResult(
        model=card.name,
        model_version=card.version,
        batch_date=batch_date,
        as_of=as_of(batch_date),
        n_rows=batch.table.num_rows,
        features=drift.features,
        prediction=drift.prediction,
        performance=performance.batches,
        baseline=card.metrics,
        min_label_coverage=policy.min_label_coverage,
        unmatched_labels=performance.unmatched_labels,
        warnings=batch.warnings
        + performance.warnings
        + _stale_policy(policy, card)
        + derived_expectations(card, context.profile.expectations),
        estimate=estimate,
        policy_version=policy.version,
        excluded_features=tuple(f for f in card.feature_names if f in policy.exclude_features),
        performance_alert_ratio=policy.performance_alert_ratio,
        estimate_alert_ratio=policy.estimate_alert_ratio,
        class_shares=class_shares(batch.table) if card.is_classifier else {},
        probabilities=drift.probabilities,
        class_estimate=class_estimate,
        calibration=None if calibration is None else calibration.quality,
        data_quality=quality.findings,
        data_quality_checked=quality.checked,
    )


def _stale_policy(policy: Policy, card: ModelCard) -> tuple[str, ...]:
    """A policy set for an earlier version may name features this one lacks."""
    unknown = sorted(policy.named_features() - set(card.feature_names))
    if not unknown:
        return ()
    return (
        f"policy {policy.version} names feature(s) {', '.join(unknown)} that {card.name} "
        f"{card.version} does not have; they are ignored: set the policy again",
    )


@dataclass(frozen=True)
class ComputedDay:
    """A day's result, and the sketches of its samples that its report pictures."""

    result: MonitoringResult
    sketches: Mapping[str, Sketch]
    rule: DriftRule  # the model's, as its policy sets it: the report states it
    persistence: Persistence
    # the version the day ran with: its estimator makes the reported batch's band again
    context: ModelContext | None = None


def compute_day(
    context: ModelContext,
    batch_date: date,
    batch: ValidatedBatch,
    window: Window,
    settings: Settings,
) -> ComputedDay:
    """Drift, the estimate before labels and realized performance of one day."""
    policy = context.policy
    rule = policy.drift_rule(settings.drift_rule)
    drift = drift_report(
        context.profile,
        batch.table,
        rule,
        rules=policy.feature_rules(settings.drift_rule),
        exclude=policy.exclude_features,
        mute=policy.mute_features,
    )
    card = context.card
    loss = None if card.is_classifier else context.loss_estimator  # a classifier's is CBPE
    estimate = estimate_performance(loss, batch.table)
    context.estimates[batch_date] = estimate
    class_estimate = estimate_batch(context.calibration, card.classes, batch.table)
    performance = window.performance(batch_date)
    quality = quality_of(
        context.card, context.profile, policy, batch_date, batch, drift, performance
    )
    result = assemble(
        context, batch_date, batch, drift, performance, estimate, class_estimate, quality
    )
    # the earlier days' verdicts are the lake's: `write_day` counts them in
    result = sustain(result, policy.drift_persistence, {})
    return ComputedDay(result, drift.sketches, rule, policy.drift_persistence, context)


def _estimate_of(lake: Lake, context: ModelContext, batch_date: date) -> PerformanceEstimate | None:
    if batch_date in context.estimates:
        return context.estimates[batch_date]
    loss = None if context.card.is_classifier else context.loss_estimator
    return batch_estimate(lake, context.card, loss, batch_date)


@dataclass(frozen=True)
class WrittenDay:
    """Where a day's result and report went; a report that could not be written says why."""

    result: MonitoringResult
    result_uri: str
    report: DayReport
    report_uri: str | None
    report_error: str | None


def write_day(
    lake: Lake,
    day: ComputedDay,
    *,
    earlier: Mapping[date, Collection[str]] | None = None,
) -> WrittenDay:
    """result.json, then report.html beside it, each replaced atomically; the caller holds the
    day's lock. A report that cannot be written is not a failed day: the result is saved.

    Drift that must persist over several days counts the `earlier` days' drifted features;
    by default those of the earlier results in the lake. The reported batch's realized MAE is
    checked against the band its own night estimated (tasks/day/band.py).
    """
    result = day.result
    if day.persistence.of > 1:
        if earlier is None:
            days = earlier_days(result.batch_date, day.persistence)
            earlier = stored_verdicts(lake, result.model, days)
        result = sustain(result, day.persistence, earlier)
    context = day.context
    if context is not None:
        result = with_band_check(result, lambda d: _estimate_of(lake, context, d))
    path = lake.result_path(result.model, result.batch_date)
    lake.write_bytes(path, to_json(result), before_commit=lambda: faults.pause_point("write-temp"))
    report = DayReport.draw(result, day.sketches, day.rule, result.alert_thresholds)
    report_path = lake.report_path(result.model, result.batch_date)
    try:
        lake.write_bytes(report_path, report.html().encode())
    except OSError as exc:
        return WrittenDay(result, lake.uri_of(path), report, None, str(exc))
    return WrittenDay(result, lake.uri_of(path), report, lake.uri_of(report_path), None)


def push_day(push: PushSettings, result: MonitoringResult, started_at: float) -> None:
    """Replace the model's group on the Pushgateway with the day's gauges (one attempt)."""
    faults.pause_point("push")
    finished = time.time()
    pushgateway.push(
        result,
        RunStamp(finished_at_seconds=finished, duration_seconds=finished - started_at),
        gateway=push.url,
        handler=pushgateway.handler_for(push),
    )


def push_failed(push: PushSettings, attempts: int, exc: OSError, written: WrittenDay) -> RunError:
    """The one line for a Pushgateway that did not take the day's gauges."""
    return RunError(
        f"could not push to the Pushgateway at {pushgateway.redact_url(push.url)} after "
        f"{attempts} attempt{'' if attempts == 1 else 's'} ({pushgateway.failure_reason(exc)}); "
        f"the results for "
        f"{written.result.batch_date} are saved in {written.result_uri} and the next run pushes "
        "again"
    )


def run_day(
    lake: Lake,
    context: ModelContext,
    batch_date: date,
    settings: Settings,
    *,
    window: Window | None = None,
) -> ComputedDay:
    """Read and compute one day, writing nothing: with the `window` of a range read once
    (backfill), or else the day's own, as the nightly run reads it."""
    batch = read_batch(lake, context.card, batch_date)
    if window is None:
        window = day_window(
            lake, context.card, batch_date, settings, current=batch.without_features().table
        )
    return compute_day(context, batch_date, batch, window, settings)


def monitor_and_write(
    lake: Lake,
    context: ModelContext,
    batch_date: date,
    settings: Settings,
    *,
    window: Window | None = None,
    push: bool = False,
    purpose: str = "monitor",
) -> WrittenDay:
    """The nightly run of one day in-process: read, compute, then write (and push) under the
    day's lock. `window` is the one of a range read once (backfill); else the day's own."""
    started = time.time()
    day = run_day(lake, context, batch_date, settings, window=window)
    model = context.card.name
    with lake.day_lock(
        model, batch_date, purpose=f"{purpose} {model} {batch_date}", policy=settings.lock_policy
    ):
        written = write_day(lake, day)
        if push:
            try:
                push_day(settings.push, written.result, started)
            except OSError as exc:  # urllib's URLError and socket errors
                raise push_failed(settings.push, 1, exc, written) from exc
    return written

"""One engine for a batch day: read (tasks/day/inputs.py), compute, write and report it.

The nightly flow runs each of these functions as one Prefect task (tasks/day/steps.py); the
backfill and the Python API run them in-process, in the same order, through `monitor_and_write`.
So a day written by either is the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from core import faults
from core.errors import PushError
from core.policy import Persistence, Policy
from core.settings import DriftRule, PushSettings, Settings
from data_lake.lake import Lake
from model_registry.registry import ModelCard
from tasks.day.band import batch_estimate, with_band_check
from tasks.day.inputs import ModelContext, day_window, read_batch
from tasks.day.persistence import earlier_days, stored_verdicts, sustain
from tasks.day.quality import derived_expectations, quality_of
from tasks.edge.validation import (
    ValidatedBatch,
)
from tasks.export import pushgateway
from tasks.export.catalogue import RunStamp
from tasks.performance.cbpe import ClassificationEstimate
from tasks.performance.classified_batch import class_shares, estimate_batch
from tasks.performance.estimate import (
    PerformanceEstimate,
    estimate_performance,
)
from tasks.performance.window import PerformanceOutcome, Window, as_of
from tasks.quality.assess import QualityOutcome
from tasks.reports.day import DayReport
from tasks.results.day import MonitoringResult, to_json
from tasks.stats.batch_drift import DriftOutcome, drift_report
from tasks.stats.sketches import Sketch


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
    for day, remembered in window.estimates.items():  # as the batches' own nights made them
        if day not in context.estimates:
            context.estimates[day] = remembered
    estimate = own_estimate(context, batch_date, batch)
    class_estimate = estimate_batch(context.calibration, context.card.classes, batch.table)
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


def own_estimate(
    context: ModelContext, batch_date: date, batch: ValidatedBatch
) -> PerformanceEstimate | None:
    """The day's estimate before labels, made once per version and day (the window read takes
    it for the state, the compute step reports it); a classifier's version has no loss
    estimator (its estimate is CBPE): None."""
    if batch_date not in context.estimates:
        context.estimates[batch_date] = estimate_performance(context.loss_estimator, batch.table)
    return context.estimates[batch_date]


def _estimate_of(lake: Lake, context: ModelContext, batch_date: date) -> PerformanceEstimate | None:
    if batch_date in context.estimates:
        return context.estimates[batch_date]
    return batch_estimate(lake, context.card, context.loss_estimator, batch_date)


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


def push_failed(push: PushSettings, attempts: int, exc: OSError, written: WrittenDay) -> PushError:
    """The one line for a Pushgateway that did not take the day's gauges."""
    return PushError(
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
            lake,
            context.card,
            batch_date,
            settings,
            current=batch.without_features().table,
            current_estimate=own_estimate(context, batch_date, batch),
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
    push_retry_delays: Sequence[float] = (),
    purpose: str = "monitor",
) -> WrittenDay:
    """The nightly run of one day in-process: read, compute, then write (and push) under the
    day's lock. `window` is the one of a range read once (backfill); else the day's own. A push
    that fails is tried again after each of `push_retry_delays` seconds (the fleet's runs)."""
    started = time.time()
    day = run_day(lake, context, batch_date, settings, window=window)
    model = context.card.name
    with lake.day_lock(
        model, batch_date, purpose=f"{purpose} {model} {batch_date}", policy=settings.lock_policy
    ):
        written = write_day(lake, day)
        if push:
            push_with_retries(settings.push, written, started, push_retry_delays)
    return written


def push_with_retries(
    push: PushSettings, written: WrittenDay, started_at: float, delays: Sequence[float]
) -> None:
    """`push_day`, tried again after each delay; the last failure is the run's one line."""
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            push_day(push, written.result, started_at)
            return
        except OSError as exc:  # urllib's URLError and socket errors
            if delay is None:
                raise push_failed(push, attempt, exc, written) from exc
            time.sleep(delay)

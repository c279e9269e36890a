"""Prefect tasks: each wraps one step's plain function with a name, retries on I/O, and logging."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from core import faults
from core.errors import RunError
from core.files import NoSpaceError, free_space, is_no_space
from core.settings import IO_RETRY_DELAYS_SECONDS, PushSettings, Settings
from data_lake.lake import Lake
from data_lake.lock import LockOwner
from model_registry.registry import Registry
from tasks.day import engine
from tasks.day.engine import ModelContext
from tasks.day.wrappers import artifact_key, compute_task, io_task, transient
from tasks.edge.validation import ValidatedBatch
from tasks.export import pushgateway
from tasks.export.catalogue import JOB, RunStamp
from tasks.performance.estimate import PerformanceEstimate, estimate_performance
from tasks.performance.window import PerformanceOutcome
from tasks.reports import day as reports
from tasks.results.day import MonitoringResult, to_json
from tasks.stats.batch_drift import DriftOutcome, drift_report


@io_task("load-model")
def load_model(settings: Settings, model: str) -> ModelContext:
    registry = Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir)
    context = engine.load_model_context(registry, model)
    get_run_logger().info(
        "model %s version %s: %d features, reference of %d rows",
        model,
        context.card.version,
        len(context.card.features),
        context.profile.n_rows,
    )
    if context.profile.n_rows == 0:
        get_run_logger().warning(
            "the reference of %s %s has 0 rows: every feature is reported as insufficient "
            "data; register the model again with out-of-sample reference rows",
            model,
            context.card.version,
        )
    return context


@io_task("load-batch")
def load_batch(settings: Settings, context: ModelContext, batch_date: date) -> ValidatedBatch:
    batch = engine.read_batch(Lake.open(settings.data_lake_uri), context.card, batch_date)
    faults.pause_point("load-batch")
    logger = get_run_logger()
    logger.info("batch %s: %d rows", batch_date, batch.table.num_rows)
    for warning in batch.warnings:
        logger.warning(warning)
    return batch


@compute_task("compute-drift")
def compute_drift(settings: Settings, context: ModelContext, batch: ValidatedBatch) -> DriftOutcome:
    outcome = drift_report(context.profile, batch.table, settings.drift_rule)
    drifted = [d.feature for d in outcome.features if d.is_drifted]
    get_run_logger().info(
        "drifted features: %s; prediction drift: %s",
        ", ".join(drifted) or "none",
        outcome.prediction.is_drifted,
    )
    return outcome


@compute_task("estimate-performance")
def estimate_batch_performance(
    context: ModelContext, batch: ValidatedBatch
) -> PerformanceEstimate | None:
    """MAE and RMSE of the batch estimated from its features and predictions, before labels."""
    estimate = estimate_performance(context.loss_estimator, batch.table)
    if estimate is not None:
        get_run_logger().info(
            "estimated MAE %.4g (band %.4g-%.4g), RMSE %.4g, from %d of %d rows",
            estimate.mae,
            estimate.mae_lower,
            estimate.mae_upper,
            estimate.rmse,
            estimate.n_sampled,
            estimate.n_rows,
        )
    return estimate


@io_task("compute-performance")
def compute_performance(
    settings: Settings, context: ModelContext, batch: ValidatedBatch, batch_date: date
) -> PerformanceOutcome:
    lake = Lake.open(settings.data_lake_uri)
    window = engine.day_window(lake, context.card, batch_date, settings, current=batch.table)
    outcome = window.performance(batch_date)
    logger = get_run_logger()
    for warning in outcome.warnings:
        logger.warning(warning)
    return outcome


@contextmanager
def io_failures_reported(settings: Settings, model: str, batch_date: date) -> Iterator[None]:
    """Storage that kept failing through the tasks' retries fails the run with one clear line."""
    try:
        yield
    except OSError as exc:
        if is_no_space(exc):  # e.g. the lock file could not be written: retries cannot help
            lake = Lake.open(settings.data_lake_uri)
            raise NoSpaceError(
                f"monitor {model} {batch_date}: no space left on the device of the data lake "
                f"({exc}; {free_space(Path(lake.root))}); nothing new was written or pushed for "
                "this day; free space there (or move the lake to a larger disk), then run the "
                "day again"
            ) from exc
        raise RunError(
            f"monitor {model} {batch_date}: the data lake or registry kept failing after "
            f"{len(IO_RETRY_DELAYS_SECONDS) + 1} attempts ({exc}); nothing new was written or "
            "pushed for this day, and the next run starts over (no clean-up needed)"
        ) from exc


@contextmanager
def day_lock(settings: Settings, model: str, batch_date: date) -> Iterator[None]:
    """Only one run writes and pushes a model's batch day at a time (data_lake/lock.py)."""
    logger = get_run_logger()
    policy = settings.lock_policy

    def waiting(holder: LockOwner | None) -> None:
        held_by = holder.describe() if holder else "another run"
        logger.warning(
            "%s %s is being written by %s; waiting up to %.0f s",
            model,
            batch_date,
            held_by,
            policy.wait_seconds,
        )

    def taken_over(holder: LockOwner | None, reason: str) -> None:
        held_by = holder.describe() if holder else "an unknown run"
        logger.warning("took over the lock of %s: %s", held_by, reason)

    lake = Lake.open(settings.data_lake_uri)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(
                lake.day_lock(
                    model,
                    batch_date,
                    purpose=f"monitor {model} {batch_date}",
                    policy=policy,
                    on_wait=waiting,
                    on_takeover=taken_over,
                )
            )
        except OSError as exc:
            if is_no_space(exc):
                raise  # io_failures_reported names the disk
            # taken in the flow, outside the retried tasks: one attempt, said as such
            raise RunError(
                f"monitor {model} {batch_date}: the day's lock in the data lake could not be "
                f"taken ({exc}); nothing new was written or pushed for this day; run it again "
                "once the lake answers"
            ) from exc
        yield


@io_task("write-result")
def write_result(settings: Settings, result: MonitoringResult) -> str:
    lake = Lake.open(settings.data_lake_uri)
    path = lake.result_path(result.model, result.batch_date)
    lake.write_bytes(path, to_json(result), before_commit=lambda: faults.pause_point("write-temp"))
    get_run_logger().info("results written to %s", lake.uri_of(path))
    return lake.uri_of(path)


@compute_task("publish-artifacts")
def publish_artifacts(
    result: MonitoringResult, settings: Settings | None = None, drift: DriftOutcome | None = None
) -> None:
    """The drift table and the summary; with `settings` and `drift`, the summary is the day's
    report with its pictures, also written beside the result as report.html (a report that
    cannot be written is a warning: the result is saved and the push must still happen)."""
    create_table_artifact(
        key=artifact_key("drift", result.model),
        table=reports.drift_rows(result),
        description=f"Drift of {result.model} {result.model_version}, batch {result.batch_date}",
    )
    markdown = reports.summary_markdown(result)
    if settings is not None and drift is not None:
        report = reports.DayReport.draw(result, drift.sketches, settings.drift_rule)
        lake = Lake.open(settings.data_lake_uri)
        path = lake.report_path(result.model, result.batch_date)
        written: str | None = None
        try:
            lake.write_bytes(path, report.html().encode())
            written = lake.uri_of(path)
        except OSError as exc:
            get_run_logger().warning("the report could not be written to the lake: %s", exc)
        markdown = report.markdown(written)
    create_markdown_artifact(
        key=artifact_key("summary", result.model),
        markdown=markdown,
        description=f"Monitoring summary, batch {result.batch_date}",
    )


@task(name="push-metrics", cache_policy=NO_CACHE, retry_condition_fn=transient)
def push_metrics(push: PushSettings, result: MonitoringResult, started_at: float) -> None:
    faults.pause_point("push")
    finished = time.time()
    pushgateway.push(
        result,
        RunStamp(finished_at_seconds=finished, duration_seconds=finished - started_at),
        gateway=push.url,
        handler=pushgateway.handler_for(push),
    )
    get_run_logger().info(
        "pushed to %s (job=%s, model=%s)", pushgateway.redact_url(push.url), JOB, result.model
    )


def push_metrics_or_fail(
    settings: Settings, result: MonitoringResult, started_at: float, written: str
) -> None:
    """Push with the configured retries; a Pushgateway that stays down fails the run clearly."""
    push = settings.push
    delays = list(push.retry_delays_seconds)
    try:
        push_metrics.with_options(retries=len(delays), retry_delay_seconds=delays)(
            push, result, started_at
        )
    except OSError as exc:  # urllib's URLError and socket errors
        raise RunError(
            f"could not push to the Pushgateway at {pushgateway.redact_url(push.url)} after "
            f"{len(delays) + 1} attempts ({pushgateway.failure_reason(exc)}); the results for "
            f"{result.batch_date} are saved in {written} and the next run pushes again"
        ) from exc

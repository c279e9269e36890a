"""Prefect tasks: each wraps one step's plain function with a name, retries on I/O, and logging."""

from __future__ import annotations

import contextlib
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
from tasks.day import engine, inputs
from tasks.day.engine import ComputedDay, WrittenDay
from tasks.day.inputs import ModelContext
from tasks.day.wrappers import artifact_key, compute_task, io_task, transient
from tasks.edge.validation import ValidatedBatch
from tasks.export import pushgateway
from tasks.export.catalogue import JOB
from tasks.performance.window import Window, as_of, window_start
from tasks.reports.day import drift_rows
from tasks.results.day import MonitoringResult


@io_task("load-model")
def load_model(settings: Settings, model: str) -> ModelContext:
    registry = Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir)
    context = inputs.load_model_context(registry, model)
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
    batch = inputs.read_batch(Lake.open(settings.data_lake_uri), context.card, batch_date)
    faults.pause_point("load-batch")
    logger = get_run_logger()
    logger.info("batch %s: %d rows", batch_date, batch.table.num_rows)
    for warning in batch.warnings:
        logger.warning(warning)
    return batch


@io_task("load-window")
def load_window(
    settings: Settings,
    context: ModelContext,
    start: date,
    end: date,
    *,
    current: ValidatedBatch | None = None,
) -> Window:
    """The scored batches and labels the days start..end need (the day's own batch in hand)."""
    window = inputs.read_window(
        Lake.open(settings.data_lake_uri),
        context.card,
        start,
        end,
        window_days=settings.performance_window_days,
        current=None if current is None else current.without_features().table,
        current_estimate=None if current is None else engine.own_estimate(context, end, current),
    )
    logger = get_run_logger()
    logger.info(
        "read %d scored batches and the labels of %s..%s for %s..%s",
        len(window.batches),
        window_start(start, settings.performance_window_days),
        as_of(end),
        start,
        end,
    )
    for day, error in sorted({**window.scored_errors, **window.label_errors}.items()):
        logger.warning("%s unreadable, the days that need it will fail: %s", day, error)
    return window


@compute_task("compute-day")
def compute_day(
    settings: Settings,
    context: ModelContext,
    batch_date: date,
    batch: ValidatedBatch,
    window: Window,
) -> ComputedDay:
    """Drift, the estimate before labels and realized performance of the day."""
    day = engine.compute_day(context, batch_date, batch, window, settings)
    result = day.result
    logger = get_run_logger()
    logger.info(
        "drifted features: %s; prediction drift: %s",
        ", ".join(result.drifted_features) or "none",
        result.prediction is not None and result.prediction.is_drifted,
    )
    estimate = result.estimate
    if estimate is not None:
        logger.info(
            "estimated MAE %.4g (band %.4g-%.4g), RMSE %.4g, from %d of %d rows",
            estimate.mae,
            estimate.mae_lower,
            estimate.mae_upper,
            estimate.rmse,
            estimate.n_sampled,
            estimate.n_rows,
        )
    guess = result.class_estimate
    if guess is not None:
        logger.info(
            "estimated accuracy %.4g (band %.4g-%.4g), ROC AUC %.4g (band %.4g-%.4g), "
            "calibrated: %s",
            guess.accuracy,
            guess.accuracy_lower,
            guess.accuracy_upper,
            guess.roc_auc,
            guess.roc_auc_lower,
            guess.roc_auc_upper,
            guess.calibrated,
        )
    for warning in result.warnings[len(batch.warnings) :]:  # the batch's were logged at load
        logger.warning(warning)
    return day


def run_warning(message: str) -> None:
    """A warning in the run's log (where the UI shows it)."""
    get_run_logger().warning(message)


@contextmanager
def io_failures_reported(settings: Settings, model: str, batch_date: date) -> Iterator[None]:
    """Storage that kept failing through the tasks' retries fails the run with one clear line."""
    try:
        yield
    except OSError as exc:
        raise io_failure(settings, model, batch_date, exc) from exc


def io_failure(settings: Settings, model: str, batch_date: date, exc: OSError) -> RunError:
    """The one line for storage that kept failing through the retries (or has no space left)."""
    if is_no_space(exc):  # e.g. the lock file could not be written: retries cannot help
        lake = Lake.open(settings.data_lake_uri)
        return NoSpaceError(
            f"monitor {model} {batch_date}: no space left on the device of the data lake "
            f"({exc}; {free_space(Path(lake.root))}); no result was written or pushed for "
            "this day; free space there (or move the lake to a larger disk), then run the "
            "day again"
        )
    return RunError(
        f"monitor {model} {batch_date}: the data lake or registry kept failing after "
        f"{len(IO_RETRY_DELAYS_SECONDS) + 1} attempts ({exc}); no result was written or "
        "pushed for this day, and the next run starts over (no clean-up needed)"
    )


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
                f"taken ({exc}); no result was written or pushed for this day; run it again "
                "once the lake answers"
            ) from exc
        yield


@io_task("write-day")
def write_day(settings: Settings, day: ComputedDay) -> WrittenDay:
    written = engine.write_day(Lake.open(settings.data_lake_uri), day)
    logger = get_run_logger()
    logger.info("results written to %s", written.result_uri)
    if written.report_error is not None:
        logger.warning("the report could not be written to the lake: %s", written.report_error)
    return written


@compute_task("publish-artifacts")
def publish_artifacts(written: WrittenDay) -> None:
    """The drift table and the day's report, with its pictures, in the Prefect UI."""
    result = written.result
    create_table_artifact(
        key=artifact_key("drift", result.model),
        table=drift_rows(result),
        description=f"Drift of {result.model} {result.model_version}, batch {result.batch_date}",
    )
    create_markdown_artifact(
        key=artifact_key("summary", result.model),
        markdown=written.report.markdown(written.report_uri),
        description=f"Monitoring summary, batch {result.batch_date}",
    )


@task(name="push-metrics", cache_policy=NO_CACHE, retry_condition_fn=transient)
def push_metrics(push: PushSettings, result: MonitoringResult, started_at: float) -> None:
    engine.push_day(push, result, started_at)
    get_run_logger().info(
        "pushed to %s (job=%s, model=%s)", pushgateway.redact_url(push.url), JOB, result.model
    )


def push_metrics_or_fail(settings: Settings, written: WrittenDay, started_at: float) -> None:
    """Push with the configured retries; a Pushgateway that stays down fails the run clearly."""
    push = settings.push
    delays = list(push.retry_delays_seconds)
    try:
        push_metrics.with_options(retries=len(delays), retry_delay_seconds=delays)(
            push, written.result, started_at
        )
    except OSError as exc:  # urllib's URLError and socket errors
        raise engine.push_failed(push, len(delays) + 1, exc, written) from exc

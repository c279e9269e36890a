"""Prefect tasks: each wraps one step's plain function with a name, retries on I/O, and logging."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from data_lake.lake import Lake
from data_lake.lock import LockOwner, LockPolicy
from driftline import faults
from driftline.errors import DriftlineError, RunError
from driftline.settings import Settings
from model_registry.registry import Registry
from tasks import metrics, monitoring
from tasks.drift_report import DriftOutcome, drift_report
from tasks.monitoring import ModelContext, PerformanceOutcome
from tasks.results import MonitoringResult, to_json
from tasks.validation import ValidatedBatch

IO_RETRY_DELAYS: list[float] = [2, 10, 30]


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass (network, storage); bad input and missing batches will not."""
    return not isinstance(state.data, DriftlineError)


def artifact_key(kind: str, model: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")


@task(
    name="load-model",
    retries=3,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def load_model(settings: Settings, model: str) -> ModelContext:
    context = monitoring.load_model_context(Registry.open(settings.model_registry_uri), model)
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


@task(
    name="load-batch",
    retries=3,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def load_batch(settings: Settings, context: ModelContext, batch_date: date) -> ValidatedBatch:
    batch = monitoring.read_batch(Lake.open(settings.data_lake_uri), context.card, batch_date)
    faults.pause_point("load-batch")
    logger = get_run_logger()
    logger.info("batch %s: %d rows", batch_date, batch.table.num_rows)
    for warning in batch.warnings:
        logger.warning(warning)
    return batch


@task(name="compute-drift", cache_policy=NO_CACHE)
def compute_drift(settings: Settings, context: ModelContext, batch: ValidatedBatch) -> DriftOutcome:
    outcome = drift_report(context.profile, batch.table, settings.drift_rule)
    drifted = [d.feature for d in outcome.features if d.is_drifted]
    get_run_logger().info(
        "drifted features: %s; prediction drift: %s",
        ", ".join(drifted) or "none",
        outcome.prediction.is_drifted,
    )
    return outcome


@task(
    name="compute-performance",
    retries=3,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def compute_performance(
    settings: Settings, context: ModelContext, batch: ValidatedBatch, batch_date: date
) -> PerformanceOutcome:
    scored, labels = monitoring.read_performance_inputs(
        Lake.open(settings.data_lake_uri),
        context.card,
        batch,
        batch_date,
        window_days=settings.performance_window_days,
    )
    outcome = monitoring.compute_performance(scored, labels, target=context.card.target)
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
        raise RunError(
            f"monitor {model} {batch_date}: the data lake or registry kept failing after "
            f"{len(IO_RETRY_DELAYS) + 1} attempts ({exc}); nothing new was written or pushed "
            "for this day, and the next run starts over (no clean-up needed)"
        ) from exc


@contextmanager
def day_lock(
    settings: Settings, model: str, batch_date: date, policy: LockPolicy
) -> Iterator[None]:
    """Only one run writes and pushes a model's batch day at a time (data_lake/lock.py)."""
    logger = get_run_logger()

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
    with lake.day_lock(
        model,
        batch_date,
        purpose=f"monitor {model} {batch_date}",
        policy=policy,
        on_wait=waiting,
        on_takeover=taken_over,
    ):
        yield


@task(
    name="write-result",
    retries=3,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def write_result(settings: Settings, result: MonitoringResult) -> str:
    lake = Lake.open(settings.data_lake_uri)
    path = lake.result_path(result.model, result.batch_date)
    lake.write_bytes(path, to_json(result))
    get_run_logger().info("results written to %s", lake.uri_of(path))
    return lake.uri_of(path)


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(result: MonitoringResult) -> None:
    rows = [
        {
            "feature": d.feature,
            "test": d.test,
            "score": round(d.score, 4) if d.status == "ok" else None,
            "p_value": d.p_value if d.status == "ok" else None,
            "p_value_adjusted": d.p_value_adjusted if d.status == "ok" else None,
            "missing_ratio": round(d.missing_ratio, 4),
            "drifted": d.is_drifted,
            "status": d.status,
        }
        for d in (*result.features, *([result.prediction] if result.prediction else []))
    ]
    create_table_artifact(
        key=artifact_key("drift", result.model),
        table=rows,
        description=f"Drift of {result.model} {result.model_version}, batch {result.batch_date}",
    )
    create_markdown_artifact(
        key=artifact_key("summary", result.model),
        markdown=summary_markdown(result),
        description=f"Monitoring summary, batch {result.batch_date}",
    )


def summary_markdown(result: MonitoringResult) -> str:
    drifted = result.drifted_features
    perf = result.current_performance
    lines = [
        f"# {result.model} {result.model_version}: batch {result.batch_date}",
        "",
        f"- rows: {result.n_rows}",
        f"- drifted features: {', '.join(drifted) if drifted else 'none'} "
        f"(of {sum(d.status == 'ok' for d in result.features)} tested)",
    ]
    if result.prediction is not None and result.prediction.status == "ok":
        lines.append(
            f"- prediction drift: D = {result.prediction.score:.3f}, "
            f"p = {result.prediction.p_value:.3g}, drifted: {result.prediction.is_drifted}"
        )
    if perf is not None and perf.metrics is not None:
        ratio = perf.metrics.mae / result.baseline.mae if result.baseline.mae else float("nan")
        lines.append(
            f"- performance on batch {perf.batch_date} ({perf.label_coverage_ratio:.0%} labelled): "
            f"MAE {perf.metrics.mae:.4g} = {ratio:.2f} x baseline {result.baseline.mae:.4g}, "
            f"R² {perf.metrics.r2:.3f}"
        )
    else:
        lines.append(
            f"- performance: no batch of the window has {result.min_label_coverage:.0%} "
            "of its labels yet"
        )
    lines += [f"- warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


@task(name="push-metrics", cache_policy=NO_CACHE, retry_condition_fn=transient)
def push_metrics(settings: Settings, result: MonitoringResult, started_at: float) -> None:
    faults.pause_point("push")
    finished = time.time()
    # TLS settings, once driftline/settings.py carries them (docs/reliability.md)
    tls = metrics.tls_context(
        ca_file=settings.pushgateway_ca_file,
        cert_file=settings.pushgateway_cert_file,
        key_file=settings.pushgateway_key_file,
    )
    metrics.push(
        result,
        metrics.RunStamp(finished_at_seconds=finished, duration_seconds=finished - started_at),
        gateway=settings.pushgateway_url,
        handler=metrics.auth_handler(
            settings.pushgateway_username, settings.pushgateway_password, tls=tls
        ),
    )
    get_run_logger().info(
        "pushed to %s (job=%s, model=%s)",
        metrics.redact_url(settings.pushgateway_url),
        metrics.JOB,
        result.model,
    )


def push_metrics_or_fail(
    settings: Settings, result: MonitoringResult, started_at: float, written: str
) -> None:
    """Push with the configured retries; a Pushgateway that stays down fails the run clearly."""
    delays = list(settings.push_retry_delays_seconds)
    try:
        push_metrics.with_options(retries=len(delays), retry_delay_seconds=delays)(
            settings, result, started_at
        )
    except OSError as exc:  # urllib's URLError and socket errors
        raise RunError(
            f"could not push to the Pushgateway at {metrics.redact_url(settings.pushgateway_url)} "
            f"after {len(delays) + 1} attempts ({metrics.failure_reason(exc)}); the results for "
            f"{result.batch_date} are saved in {written} and the next run pushes again"
        ) from exc

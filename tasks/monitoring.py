"""One nightly run's work, step by step, as plain functions over the lake and the registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_lake.lake import Lake
from driftline.errors import InputError
from driftline.settings import Settings
from model_registry.registry import ModelCard, Registry
from tasks.drift_report import DriftOutcome, drift_report
from tasks.performance import BatchPerformance, performance_by_batch
from tasks.profile import ReferenceProfile, load_profile
from tasks.results import MonitoringResult
from tasks.validation import PREDICTION, ROW_ID, ValidatedBatch, validate_batch, validate_labels


@dataclass(frozen=True)
class ModelContext:
    card: ModelCard
    profile: ReferenceProfile


@dataclass(frozen=True)
class PerformanceOutcome:
    batches: tuple[BatchPerformance, ...]
    unmatched_labels: int
    warnings: tuple[str, ...]


def load_model_context(registry: Registry, model: str, version: str = "production") -> ModelContext:
    """The card and the reference profile; the model file itself is not needed to monitor."""
    card = registry.card(model, version)
    return ModelContext(card, load_profile(registry, card))


def as_of(batch_date: date) -> date:
    """The nightly run for day D runs on D+1 and sees labels arrived up to then."""
    return batch_date + timedelta(days=1)


def read_batch(lake: Lake, card: ModelCard, batch_date: date) -> ValidatedBatch:
    table = lake.read_scored(card.name, batch_date)
    source = f"batch {batch_date} ({lake.uri_of(lake.scored_dir(card.name, batch_date))})"
    return validate_batch(table, card, source=source)


def _with_date(table: pa.Table, name: str, day: date) -> pa.Table:
    return table.append_column(name, pa.array(np.full(table.num_rows, np.datetime64(day, "D"))))


def read_performance_inputs(
    lake: Lake, card: ModelCard, batch: ValidatedBatch, batch_date: date, *, window_days: int
) -> tuple[pa.Table, pa.Table]:
    """Predictions of the window's batches (row_id, prediction, batch_date) and the labels
    arrived for them as of the run (row_id, target, arrival_date)."""
    first = batch_date - timedelta(days=window_days - 1)
    columns = [ROW_ID, PREDICTION]
    tables = [_with_date(batch.table.select(columns), "batch_date", batch_date)]
    for day in lake.scored_dates(card.name):
        if first <= day < batch_date:
            table = lake.read_scored(card.name, day, columns=columns)
            tables.append(_with_date(_uniform(table, columns), "batch_date", day))
    scored = pa.concat_tables(tables, promote_options="permissive")
    label_tables = []
    for arrival in lake.label_arrival_dates(card.name):
        # a label for a batch in the window arrives after the window opens
        if first < arrival <= as_of(batch_date):
            for path in lake.files(lake.labels_dir(card.name, arrival), ".parquet"):
                table = validate_labels(
                    lake.read_parquet(path), target=card.target, source=lake.uri_of(path)
                )
                columns_ = [ROW_ID, card.target]
                label_tables.append(_with_date(_uniform(table, columns_), "arrival_date", arrival))
    labels = (
        pa.concat_tables(label_tables, promote_options="permissive")
        if label_tables
        else pa.table(
            {
                ROW_ID: pa.array([], pa.string()),
                card.target: pa.array([], pa.float64()),
                "arrival_date": pa.array([], pa.date32()),
            }
        )
    )
    row_ids = scored.column(ROW_ID)
    if pc.count_distinct(row_ids).as_py() != scored.num_rows:
        counts = pc.value_counts(row_ids)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise InputError(
            f"row_id {dup!r} appears in more than one batch of model {card.name!r}; "
            "row_id must be unique within a model"
        )
    return scored, labels


def _uniform(table: pa.Table, columns: list[str]) -> pa.Table:
    """row_id as strings and values as float64, so the files of a window concatenate."""
    arrays = [pc.cast(table.column(columns[0]), pa.string())]
    arrays += [pc.cast(table.column(c), pa.float64()) for c in columns[1:]]
    return pa.table(dict(zip(columns, arrays, strict=True)))


def performance_outcome(batches: Sequence[BatchPerformance], unmatched: int) -> PerformanceOutcome:
    """The window's performance, with a warning when labels matched no scored row."""
    warnings = (
        (f"{unmatched} label(s) match no scored row of the last batches and were skipped",)
        if unmatched
        else ()
    )
    return PerformanceOutcome(tuple(batches), unmatched, warnings)


def compute_performance(scored: pa.Table, labels: pa.Table, *, target: str) -> PerformanceOutcome:
    return performance_outcome(*performance_by_batch(scored, labels, target=target))


def assemble(
    context: ModelContext,
    batch_date: date,
    batch: ValidatedBatch,
    drift: DriftOutcome,
    performance: PerformanceOutcome,
    settings: Settings,
) -> MonitoringResult:
    card = context.card
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
        min_label_coverage=settings.min_label_coverage,
        unmatched_labels=performance.unmatched_labels,
        warnings=batch.warnings + performance.warnings,
    )


def monitor_day(
    lake: Lake, context: ModelContext, batch_date: date, settings: Settings
) -> MonitoringResult:
    """The nightly run's computation for one day, in one call (used by backfill)."""
    batch = read_batch(lake, context.card, batch_date)
    drift = drift_report(context.profile, batch.table, settings.drift_rule)
    batch = batch.without_features()
    scored, labels = read_performance_inputs(
        lake, context.card, batch, batch_date, window_days=settings.performance_window_days
    )
    performance = compute_performance(scored, labels, target=context.card.target)
    return assemble(context, batch_date, batch, drift, performance, settings)

"""Performance on labelled rows (contract section 4), per scored batch, as of a run date."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn import metrics


@dataclass(frozen=True)
class RegressionMetrics:
    mae: float
    rmse: float
    mape: float  # a ratio, 0.12 = 12 %; rows whose target is 0 are left out
    r2: float


@dataclass(frozen=True)
class BatchPerformance:
    batch_date: date
    n_rows: int
    n_labelled: int
    label_coverage_ratio: float
    metrics: RegressionMetrics | None  # None when no row is labelled


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> RegressionMetrics:
    nonzero = y_true != 0
    mape = (
        float(metrics.mean_absolute_percentage_error(y_true[nonzero], y_pred[nonzero]))
        if nonzero.any()
        else math.nan
    )
    return RegressionMetrics(
        mae=float(metrics.mean_absolute_error(y_true, y_pred)),
        rmse=float(metrics.root_mean_squared_error(y_true, y_pred)),
        mape=mape,
        r2=float(metrics.r2_score(y_true, y_pred)) if y_true.size >= 2 else math.nan,
    )


ROW_ID = "row_id"
EPOCH = date(1970, 1, 1)


def _string_ids(table: pa.Table) -> pa.Table:
    """row_id as Arrow strings, whichever of string or integer ids a file carried."""
    index = table.column_names.index(ROW_ID)
    return table.set_column(index, ROW_ID, pc.cast(table.column(ROW_ID), pa.string()))


def latest_labels(labels: pa.Table) -> pa.Table:
    """One label per row_id: a row labelled twice keeps its latest arrival (then read order)."""
    if pc.count_distinct(labels.column(ROW_ID)).as_py() == labels.num_rows:
        return labels
    # Arrow's sort is stable, and "last" follows row order when not threaded; a later null
    # label still replaces an earlier one, as it did when it arrived
    keep_nulls = pc.ScalarAggregateOptions(skip_nulls=False)
    others = [c for c in labels.column_names if c != ROW_ID]
    latest = (
        labels.sort_by([("arrival_date", "ascending")])
        .group_by(ROW_ID, use_threads=False)
        .aggregate([(c, "last", keep_nulls) for c in others])
    )
    return latest.rename_columns([ROW_ID, *others])


def performance_by_batch(
    scored: pa.Table, labels: pa.Table, *, target: str
) -> tuple[list[BatchPerformance], int]:
    """Per batch_date of `scored` (row_id, prediction, batch_date), joined to `labels`
    (row_id, target, arrival_date) already cut to the run's as-of date.

    Returns the per-batch performance and how many labels matched no scored row. Rows keep
    their order within a batch, so the sums come out the same on every path.
    """
    latest = latest_labels(_string_ids(labels))
    # row_ids are unique on both sides (checked across the window; one label per row), so a
    # hash lookup of each scored row in the labels is the join, in the scored rows' own order
    wanted = latest.column(ROW_ID).combine_chunks()
    found = pc.index_in(_string_ids(scored).column(ROW_ID), value_set=wanted)
    unmatched = latest.num_rows - (len(found) - found.null_count)
    labels_found = latest.column(target).take(found)
    days = pc.cast(scored.column("batch_date"), pa.int32()).to_numpy(zero_copy_only=False)
    truth = pc.cast(labels_found, pa.float64()).to_numpy(zero_copy_only=False)
    predicted = pc.cast(scored.column("prediction"), pa.float64()).to_numpy(zero_copy_only=False)
    out = []
    for day in np.unique(days):
        rows = days == day
        labelled = rows & ~np.isnan(truth)
        n_rows, n_labelled = int(rows.sum()), int(labelled.sum())
        out.append(
            BatchPerformance(
                batch_date=EPOCH + timedelta(days=int(day)),
                n_rows=n_rows,
                n_labelled=n_labelled,
                label_coverage_ratio=n_labelled / n_rows if n_rows else 0.0,
                metrics=regression_metrics(truth[labelled], predicted[labelled])
                if n_labelled
                else None,
            )
        )
    return out, unmatched

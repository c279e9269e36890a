"""Performance on labelled rows (contract section 4), per scored batch, as of a run date."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
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


def _ids(row_ids: pd.Series) -> pa.Array:
    """row_ids as Arrow strings, whichever of string or integer ids a file carried."""
    return pc.cast(pa.array(row_ids), pa.string())


def latest_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """One label per row_id: a row labelled twice keeps its latest arrival."""
    ordered = labels.sort_values("arrival_date", kind="stable")
    return ordered.drop_duplicates("row_id", keep="last")


def performance_by_batch(
    scored: pd.DataFrame, labels: pd.DataFrame, *, target: str
) -> tuple[list[BatchPerformance], int]:
    """Per batch_date of `scored` (row_id, batch_date, prediction), joined to `labels`
    (row_id, arrival_date, target) already cut to the run's as-of date.

    Returns the per-batch performance and how many labels matched no scored row.
    """
    latest = latest_labels(labels)[["row_id", target]]
    # row_ids are unique on both sides (validated per batch and across the window; one label
    # per row), so no merge validation; Arrow's hash set counts the unmatched ones ~20x faster
    # than pandas' isin on string columns
    joined = scored.merge(latest, on="row_id", how="left")
    known = pc.is_in(_ids(latest["row_id"]), value_set=_ids(scored["row_id"]))
    unmatched = int(latest.shape[0] - pc.sum(known).as_py()) if len(latest) else 0
    out = []
    for batch_date, rows in joined.groupby("batch_date", sort=True):
        labelled = rows[rows[target].notna()]
        y_true = labelled[target].to_numpy(dtype=np.float64)
        y_pred = labelled["prediction"].to_numpy(dtype=np.float64)
        out.append(
            BatchPerformance(
                batch_date=batch_date,
                n_rows=len(rows),
                n_labelled=len(labelled),
                label_coverage_ratio=len(labelled) / len(rows) if len(rows) else 0.0,
                metrics=regression_metrics(y_true, y_pred) if len(labelled) else None,
            )
        )
    return out, unmatched

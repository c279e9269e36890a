"""Performance before the labels: direct loss estimation (DLE), fitted once per version.

At registration two regressors learn a row's absolute and squared error from its features and
its prediction; every night they predict each row's losses, and the batch's MAE and RMSE are
estimated from them with a band of `BAND_Z` standard errors. It follows covariate shift and
cannot see concept drift. Rows of one day share its conditions, so when the reference's rows
carry their days the band also holds the estimate's between-day error measured on them. The
method, the band's terms and its calibration (scripts/calibrate_estimate.py, scripts/real_year.py):
docs/statistics.md, "Estimated performance before the labels".
Storing, caching and loading the estimator: tasks/edge/estimator_file.py.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_lake.columns import BATCH_DATE, PREDICTION
from model_registry.registry import (
    FeatureSpec,
)
from tasks.stats.columns import as_categories

LOSS_ESTIMATOR_FILE = "loss_estimator.joblib"
EXTRA_KEY = "loss_estimator"  # the card's extra entry: the estimator's accuracy on held-out rows
# 2: the accuracy record holds the between-day error (`day_error`); format 1 has none (0)
ESTIMATOR_FORMAT = 2
READABLE_FORMATS = (1, 2)
HOLDOUT_SHARE = 0.3  # of the labelled reference rows, held out to measure the estimator
MIN_LABELLED_ROWS = 100  # fewer labelled reference rows: no estimator, no estimate
MAX_FIT_ROWS = 200_000  # a larger reference is fitted on a seeded sample of this many rows
MAX_SAMPLE_ROWS = 20_000  # a larger batch is estimated from a seeded sample of this many rows
BAND_Z = 2.58  # standard errors either side: scripts/calibrate_estimate.py, docs/statistics.md
SEED = 0
MAX_CATEGORY_CODES = 255  # HistGradientBoostingRegressor's limit for a categorical feature
MIN_ERROR_DAYS = 5  # fewer reference days with enough held-out rows: no between-day error
MIN_DAY_HOLDOUT_ROWS = 30  # a day with fewer held-out rows says too little of its own error


@dataclass(frozen=True)
class EstimatorAccuracy:
    """How the estimator did on reference rows it was not fitted on; kept in the card."""

    fit_rows: int
    holdout_rows: int
    realized_mae: float  # on the held-out rows
    estimated_mae: float
    realized_rmse: float
    estimated_rmse: float
    level_error: float  # relative standard error of the fitted level: sd|e| / (mean|e| sqrt(n))
    # the between-day relative error of a day's estimate, beyond its rows' noise, and the
    # reference days it was measured on (0 and 0: a reference without days, or format 1)
    day_error: float = 0.0
    error_days: int = 0

    @property
    def mae_relative_error(self) -> float | None:
        """(estimated - realized) / realized MAE on the held-out rows; None when realized is 0."""
        if not self.realized_mae:
            return None
        return (self.estimated_mae - self.realized_mae) / self.realized_mae

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mae_relative_error": self.mae_relative_error}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EstimatorAccuracy:
        return cls(
            fit_rows=int(raw["fit_rows"]),
            holdout_rows=int(raw["holdout_rows"]),
            realized_mae=float(raw["realized_mae"]),
            estimated_mae=float(raw["estimated_mae"]),
            realized_rmse=float(raw["realized_rmse"]),
            estimated_rmse=float(raw["estimated_rmse"]),
            level_error=float(raw["level_error"]),
            day_error=float(raw.get("day_error", 0.0)),
            error_days=int(raw.get("error_days", 0)),
        )


@dataclass(frozen=True)
class LossEstimator:
    """The two fitted regressors and what they were fitted on."""

    absolute: Any  # features + prediction -> |error|
    squared: Any  # features + prediction -> error^2
    features: tuple[FeatureSpec, ...]
    accuracy: EstimatorAccuracy


@dataclass(frozen=True)
class PerformanceEstimate:
    """A batch's MAE and RMSE estimated from its features and predictions, before any label."""

    n_rows: int  # rows of the batch
    n_sampled: int  # rows whose losses were predicted (all, up to MAX_SAMPLE_ROWS)
    mae: float
    mae_lower: float  # mae -/+ BAND_Z standard errors (lower clipped at 0)
    mae_upper: float
    mae_standard_error: float
    rmse: float


class HasTarget(Protocol):
    """A model card, or what commands know of it before it is written."""

    @property
    def features(self) -> Sequence[FeatureSpec]: ...

    @property
    def target(self) -> str: ...


# the inputs ----------------------------------------------------------------------------------
def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """As float64 with NaN for missing; integers past 2**53 and decimals round, as elsewhere."""
    floats = pc.cast(column, pa.float64(), safe=False)
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_coded(spec: FeatureSpec) -> bool:
    """A categorical feature the regressors take as categories (else as ordered codes)."""
    return spec.kind == "categorical" and len(spec.categories) <= MAX_CATEGORY_CODES


def design_matrix(table: pa.Table, features: Sequence[FeatureSpec]) -> np.ndarray:
    """One row per table row: each feature, then the prediction, as float64.

    A categorical value becomes the index of its string form among the card's categories; one
    the reference never saw, and a missing one, become NaN (the regressors' missing value).
    """
    columns = []
    for spec in features:
        column = table.column(spec.name)
        if spec.kind == "numeric":
            columns.append(_floats(column))
        else:
            known = pa.array(list(spec.categories), pa.string())
            columns.append(_floats(pc.index_in(as_categories(column), value_set=known)))
    columns.append(_floats(table.column(PREDICTION)))
    return np.column_stack(columns) if table.num_rows else np.empty((0, len(columns)))


# fitting -------------------------------------------------------------------------------------
def split_reference(reference: pa.Table, target: str) -> tuple[np.ndarray, np.ndarray]:
    """The labelled reference rows the estimator is fitted on, and those held out (indices).

    Seeded, so a calibration can draw batches from exactly the held-out rows.
    """
    truth = _floats(reference.column(target))
    predicted = _floats(reference.column(PREDICTION))
    labelled = np.flatnonzero(np.isfinite(truth) & np.isfinite(predicted))
    shuffled = np.random.default_rng(SEED).permutation(labelled)
    n_holdout = round(HOLDOUT_SHARE * labelled.size)
    fit = shuffled[n_holdout:][:MAX_FIT_ROWS]
    return np.sort(fit), np.sort(shuffled[:n_holdout])


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The regressors on one OpenMP thread: with other work on the cores, OpenMP's threads wait
    on each other, many times slower than one thread (docs/statistics.md, "Cost").
    Only OpenMP runtimes already loaded are limited: enter it once sklearn is imported."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _regressor(features: Sequence[FeatureSpec]) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    coded = np.array([_is_coded(spec) for spec in features] + [False])
    return HistGradientBoostingRegressor(
        categorical_features=coded, early_stopping=False, random_state=SEED
    )


def fit_loss_estimator(
    reference: pa.Table, features: Sequence[FeatureSpec], target: str
) -> LossEstimator | None:
    """Fit on the reference's labelled rows, measured on the held-out ones; None with fewer
    than MIN_LABELLED_ROWS labelled rows."""
    fit, holdout = split_reference(reference, target)
    if fit.size + holdout.size < MIN_LABELLED_ROWS:
        return None
    x = design_matrix(reference, features)
    error = _floats(reference.column(target)) - _floats(reference.column(PREDICTION))
    losses = np.abs(error[fit])
    absolute, squared = _regressor(features), _regressor(features)  # loads sklearn's OpenMP
    with _one_thread():
        absolute.fit(x[fit], losses)
        squared.fit(x[fit], error[fit] ** 2)
    mean_loss = float(np.mean(losses))
    level_error = float(np.std(losses)) / (mean_loss * math.sqrt(fit.size)) if mean_loss else 0.0
    predicted_abs, predicted_sq = _predict(absolute, squared, x[holdout])
    error_days, day_error = between_day_error(
        _days(reference, holdout), np.abs(error[holdout]), predicted_abs, predicted_sq
    )
    accuracy = EstimatorAccuracy(
        fit_rows=int(fit.size),
        holdout_rows=int(holdout.size),
        realized_mae=float(np.mean(np.abs(error[holdout]))),
        estimated_mae=float(np.mean(predicted_abs)),
        realized_rmse=float(np.sqrt(np.mean(error[holdout] ** 2))),
        estimated_rmse=float(np.sqrt(np.mean(predicted_sq))),
        level_error=level_error,
        day_error=day_error,
        error_days=error_days,
    )
    return LossEstimator(absolute, squared, tuple(features), accuracy)


def _days(reference: pa.Table, rows: np.ndarray) -> np.ndarray | None:
    """The day (days since 1970) of each of `rows`; None for a reference without days."""
    if BATCH_DATE not in reference.column_names:
        return None
    days = pc.cast(reference.column(BATCH_DATE).take(pa.array(rows)), pa.int32())
    return np.asarray(days.to_numpy(zero_copy_only=False), dtype=np.int64)


def between_day_error(
    days: np.ndarray | None,
    realized: np.ndarray,
    predicted_abs: np.ndarray,
    predicted_sq: np.ndarray,
) -> tuple[int, float]:
    """The reference days used and the root mean square of a day's relative estimate error
    (realized - estimated) / estimated over the held-out rows, less what its rows' noise
    explains: (days, 0.0) with fewer than MIN_ERROR_DAYS days of MIN_DAY_HOLDOUT_ROWS rows.

    The rows' noise is the band's own term, mean(e^2 - |e|^2 predicted) / n, relative to the
    day's estimate squared; what is left is the part that a day's rows share (its weather,
    its schedule), which no number of its rows averages away.
    """
    if days is None or days.size == 0:
        return 0, 0.0
    order = np.argsort(days, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(days[order]) != 0) + 1)
    excess = []
    for rows in groups:
        estimated = float(np.mean(predicted_abs[rows])) if rows.size else 0.0
        if rows.size < MIN_DAY_HOLDOUT_ROWS or estimated <= 0:
            continue
        relative = (float(np.mean(realized[rows])) - estimated) / estimated
        noise = float(np.mean(np.maximum(predicted_sq[rows] - predicted_abs[rows] ** 2, 0.0)))
        excess.append(relative**2 - noise / rows.size / estimated**2)
    if len(excess) < MIN_ERROR_DAYS:
        return len(excess), 0.0
    return len(excess), math.sqrt(max(float(np.mean(excess)), 0.0))


# storing -------------------------------------------------------------------------------------
def _predict(absolute: Any, squared: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] == 0:
        return np.empty(0), np.empty(0)
    with _one_thread():
        return (
            np.clip(np.asarray(absolute.predict(x), dtype=np.float64), 0.0, None),
            np.clip(np.asarray(squared.predict(x), dtype=np.float64), 0.0, None),
        )


def predicted_losses(estimator: LossEstimator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's predicted absolute and squared error (neither below 0)."""
    return _predict(estimator.absolute, estimator.squared, x)


def sample_rows(n_rows: int, max_rows: int = MAX_SAMPLE_ROWS) -> np.ndarray | None:
    """A seeded sample of row indices, in order, or None when every row is used."""
    if n_rows <= max_rows:
        return None
    return np.sort(np.random.default_rng(SEED).choice(n_rows, size=max_rows, replace=False))


def estimate_from_losses(
    absolute: np.ndarray,
    squared: np.ndarray,
    *,
    n_rows: int,
    level_error: float,
    day_error: float = 0.0,
    z: float = BAND_Z,
) -> PerformanceEstimate:
    """The batch's MAE and RMSE from the predicted losses of `absolute.size` of its `n_rows`
    rows, with the band of the module docstring: the rows' noise, the sample's, the fitted
    level's error and the between-day error, added as variances."""
    m = absolute.size
    mae = float(np.mean(absolute))
    noise = float(np.mean(np.maximum(squared - absolute**2, 0.0))) / n_rows
    sampled = float(np.var(absolute, ddof=1)) / m * (1 - m / n_rows) if 1 < m < n_rows else 0.0
    standard_error = math.sqrt(noise + sampled + (level_error * mae) ** 2 + (day_error * mae) ** 2)
    return PerformanceEstimate(
        n_rows=n_rows,
        n_sampled=m,
        mae=mae,
        mae_lower=max(mae - z * standard_error, 0.0),
        mae_upper=mae + z * standard_error,
        mae_standard_error=standard_error,
        rmse=math.sqrt(float(np.mean(squared))),
    )


def estimate_performance(
    estimator: LossEstimator | None, table: pa.Table, *, max_rows: int = MAX_SAMPLE_ROWS
) -> PerformanceEstimate | None:
    """The estimate for a validated batch (its features and prediction); None without an
    estimator or rows."""
    if estimator is None or table.num_rows == 0:
        return None
    rows = sample_rows(table.num_rows, max_rows)
    sample = table if rows is None else table.take(pa.array(rows))
    absolute, squared = predicted_losses(estimator, design_matrix(sample, estimator.features))
    accuracy = estimator.accuracy
    return estimate_from_losses(
        absolute,
        squared,
        n_rows=table.num_rows,
        level_error=accuracy.level_error,
        day_error=accuracy.day_error,
    )

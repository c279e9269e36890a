"""Fitting the example model and describing any model for the registry."""

from __future__ import annotations

import io
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from core.errors import InputError
from data_lake.columns import BATCH_DATE, MODEL_VERSION, PREDICTION, ROW_ID, SCORED_AT
from model_registry.registry import FeatureSpec, HoldoutMetrics
from model_registry.task import ClassifierHoldoutMetrics, TaskKind
from tasks.performance.window import regression_metrics
from tasks.stats.columns import category_counts

# columns of a reference that are never features: its rows' days (kept, as BATCH_DATE, for the
# normal ranges and the estimate's between-day error) and what the lake adds to a scored batch
NOT_FEATURES = (PREDICTION, ROW_ID, BATCH_DATE, SCORED_AT, MODEL_VERSION)
LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "scipy", "joblib", "driftline")


@dataclass(frozen=True)
class PreparedModel:
    """Everything the registry stores for a version, before it is written."""

    estimator_bytes: bytes | None  # None: the reference held the predictions, no model was given
    reference_bytes: bytes
    target: str
    features: tuple[FeatureSpec, ...]
    metrics: HoldoutMetrics | ClassifierHoldoutMetrics
    libraries: dict[str, str]
    task: TaskKind = "regression"
    classes: tuple[str, ...] = ()  # a classifier's (tasks/models/classifier.py)


def random_forest_pipeline(categorical: list[str], *, seed: int) -> Pipeline:
    """Ordinal-encode the categoricals, pass numerics through, fit a random forest."""
    encode = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    encoded_missing_value=-1,
                ),
                categorical,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    forest = RandomForestRegressor(
        n_estimators=60, min_samples_leaf=3, max_features=0.7, n_jobs=-1, random_state=seed
    )
    return Pipeline([("encode", encode), ("forest", forest)])


def describe_features(
    frame: pd.DataFrame,
    *,
    target: str,
    categorical: list[str] | None = None,
    date_column: str | None = None,
) -> tuple[FeatureSpec, ...]:
    """Feature specs from a reference frame: numeric unless named or typed as categorical;
    the target, the days' column and the lake's own columns are not features."""
    named = set(categorical or [])
    unknown = named - set(frame.columns)
    if unknown:
        raise InputError(
            f"--categorical names {sorted(unknown)} that are not reference columns "
            f"(found {', '.join(frame.columns)})"
        )
    specs = []
    for name in frame.columns:
        if name in (target, date_column, *NOT_FEATURES):
            continue
        column = frame[name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if name in named or not numeric:
            # the same spelling the drift test counts with (booleans as true/false)
            counts, _ = category_counts(pa.Array.from_pandas(column))
            specs.append(FeatureSpec(name, "categorical", tuple(sorted(counts))))
        else:
            specs.append(FeatureSpec(name, "numeric"))
    return tuple(specs)


def reference_days(frame: pd.DataFrame, date_column: str | None) -> pd.Series | None:
    """Each reference row's day (UTC), from `date_column`, else a `batch_date` or `scored_at`
    column; None when the reference has none. Unparsable or missing days are bad input."""
    name = date_column or next((c for c in (BATCH_DATE, SCORED_AT) if c in frame.columns), None)
    if name is None:
        return None
    if name not in frame.columns:
        raise InputError(
            f"reference lacks the date column {name!r} (found {', '.join(map(str, frame.columns))})"
            "; pass the column that holds each row's day"
        )
    try:
        stamps = pd.to_datetime(frame[name], utc=True)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"reference column {name!r}: not dates ({exc}); expected a date or timestamp per row"
        ) from None
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise InputError(
            f"reference column {name!r}: row {row} has no date; give every reference row its day"
        )
    return stamps.dt.date


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def prepare(
    estimator: Any | None,
    reference: pd.DataFrame,
    *,
    target: str,
    features: tuple[FeatureSpec, ...],
    date_column: str | None = None,
) -> PreparedModel:
    """Predict the reference if it has no predictions, and compute the holdout metrics.

    `estimator` may be None when the reference holds a `prediction` column: the version then
    has no model file, and monitoring needs none. The rows' days (`reference_days`) are kept
    in the stored reference as its `batch_date` column.
    """
    names = [f.name for f in features]
    reference = reference.reset_index(drop=True)
    if PREDICTION not in reference.columns:
        if estimator is None:
            raise InputError(
                f"the reference has no {PREDICTION!r} column and no model was given to predict "
                f"it; pass the fitted model, or add its predictions as a {PREDICTION!r} column"
            )
        reference[PREDICTION] = np.asarray(estimator.predict(reference[names]), dtype=np.float64)
    labelled = reference[reference[target].notna()]
    if labelled.empty:
        raise InputError(
            f"the reference has no rows with target {target!r}; expected labelled rows"
        )
    m = regression_metrics(
        labelled[target].to_numpy(np.float64), labelled[PREDICTION].to_numpy(np.float64)
    )
    estimator_bytes = None
    if estimator is not None:
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer, compress=3)
        estimator_bytes = buffer.getvalue()
    stored = reference[[*names, target, PREDICTION]]
    days = reference_days(reference, date_column)
    if days is not None:
        stored = stored.assign(**{BATCH_DATE: days})
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(stored, preserve_index=False), sink, compression="zstd")
    return PreparedModel(
        estimator_bytes=estimator_bytes,
        reference_bytes=sink.getvalue().to_pybytes(),
        target=target,
        features=features,
        metrics=HoldoutMetrics(mae=m.mae, rmse=m.rmse, mape=m.mape, r2=m.r2),
        libraries=library_versions(),
    )


def fit_random_forest(
    table: pd.DataFrame, *, target: str, categorical: list[str], seed: int = 42
) -> tuple[Pipeline, pd.DataFrame]:
    """Fit on 75 % of the rows; the other 25 % are returned as the out-of-sample reference."""
    train, reference = train_test_split(table, test_size=0.25, random_state=seed)
    features = describe_features(reference, target=target, categorical=categorical)
    names = [f.name for f in features]
    pipeline = random_forest_pipeline(categorical, seed=seed)
    pipeline.fit(train[names], train[target])
    # parallel prediction sums the trees in thread order, which changes the last bits of a
    # prediction from run to run; one thread keeps a simulation with a seed reproducible
    pipeline.set_params(forest__n_jobs=1)
    return pipeline, reference

"""Describing a classifier for the registry: its task, its classes, its reference and holdout.

A classifier's stored reference holds its features, the true class (target), the predicted
class (`prediction`) and one `proba_<class>` column per class, every class in its string form
(tasks/performance/classification.py).
"""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError
from data_lake.columns import BATCH_DATE, PREDICTION
from model_registry.registry import FeatureSpec
from model_registry.task import ClassifierHoldoutMetrics, TaskKind
from tasks.models.training import PreparedModel, library_versions, reference_days
from tasks.performance.classification import (
    PROBA_PREFIX,
    class_codes,
    class_strings,
    classification_metrics,
    ordered_classes,
    proba_column,
    probability_matrix,
)


def _is_class_dtype(column: pd.Series) -> bool:
    return (
        pd.api.types.is_bool_dtype(column)
        or pd.api.types.is_object_dtype(column)
        or pd.api.types.is_string_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
    )


def proba_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith(PROBA_PREFIX)]


def infer_task(estimator: Any | None, frame: pd.DataFrame, target: str) -> TaskKind:
    """A classifier when the estimator has `predict_proba` and `classes_`, or the reference's
    predictions (or, without them, its target) are classes: strings, booleans, or integers
    beside `proba_<class>` columns. Otherwise a regressor."""
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        return "classification"
    if PREDICTION in frame.columns:
        column = frame[PREDICTION]
        integers = pd.api.types.is_integer_dtype(column)
        if _is_class_dtype(column) or (integers and proba_columns(frame)):
            return "classification"
        return "regression"
    if target in frame.columns and _is_class_dtype(frame[target]):
        return "classification"
    return "regression"


def _strings(values: Any) -> list[str]:
    return [str(v) for v in class_strings(pa.array(np.asarray(values).tolist())).to_pylist()]


def classes_of(estimator: Any | None, frame: pd.DataFrame) -> tuple[str, ...]:
    """The classes in order: the estimator's `classes_`, else those of the reference's
    `proba_<class>` columns in their natural order."""
    if estimator is not None and hasattr(estimator, "classes_"):
        classes = tuple(_strings(estimator.classes_))
    else:
        named = [c[len(PROBA_PREFIX) :] for c in proba_columns(frame)]
        if not named:
            raise InputError(
                f"the classifier's reference has no {PROBA_PREFIX}<class> columns and no model "
                "was given to predict them; add one probability column per class (e.g. "
                f"{PROBA_PREFIX}yes, {PROBA_PREFIX}no), or pass the fitted model"
            )
        classes = ordered_classes(named)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise InputError(
            f"the classifier's classes {list(classes)} are not two or more distinct values "
            "in their string form; give each class its own name"
        )
    return classes


def _check_known(column: pd.Series, classes: tuple[str, ...], what: str) -> pa.Array:
    values = class_strings(pa.Array.from_pandas(column))
    unseen = sorted(set(values.drop_null().to_pylist()) - set(classes))
    if unseen:
        raise InputError(
            f"reference column {what!r} holds class(es) {', '.join(map(repr, unseen[:5]))} "
            f"that are not among the model's classes ({', '.join(classes)}); register the "
            "model with a reference of its own classes"
        )
    return values


def prepare_classifier(
    estimator: Any | None,
    reference: pd.DataFrame,
    *,
    target: str,
    features: tuple[FeatureSpec, ...],
    date_column: str | None = None,
) -> PreparedModel:
    """Predict the reference's classes and probabilities if it has none, and compute the
    holdout metrics (tasks/performance/classification.py) on its labelled rows."""
    names = [f.name for f in features]
    reference = reference.reset_index(drop=True)
    classes = classes_of(estimator, reference)
    probas = [proba_column(c) for c in classes]
    if PREDICTION not in reference.columns or not set(probas) <= set(reference.columns):
        if estimator is None or not hasattr(estimator, "predict_proba"):
            missing = [c for c in [PREDICTION, *probas] if c not in reference.columns]
            raise InputError(
                f"the classifier's reference lacks {', '.join(missing)} and no model with "
                "predict_proba() was given to predict them; pass the fitted model, or add the "
                "columns"
            )
        matrix = np.asarray(estimator.predict_proba(reference[names]), dtype=np.float64)
        reference = reference.assign(**{p: matrix[:, i] for i, p in enumerate(probas)})
        reference[PREDICTION] = estimator.predict(reference[names])
    stored = pd.DataFrame({n: reference[n] for n in names})
    stored[target] = _check_known(reference[target], classes, target).to_pandas()
    stored[PREDICTION] = _check_known(reference[PREDICTION], classes, PREDICTION).to_pandas()
    for p in probas:
        stored[p] = reference[p].astype(np.float64)
    days = reference_days(reference, date_column)
    if days is not None:
        stored[BATCH_DATE] = days
    table = pa.Table.from_pandas(stored, preserve_index=False)
    metrics = holdout_metrics(table, target=target, classes=classes)
    estimator_bytes = None
    if estimator is not None:
        buffer = io.BytesIO()
        joblib.dump(estimator, buffer, compress=3)
        estimator_bytes = buffer.getvalue()
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return PreparedModel(
        estimator_bytes=estimator_bytes,
        reference_bytes=sink.getvalue().to_pybytes(),
        target=target,
        features=features,
        metrics=metrics,
        libraries=library_versions(),
        task="classification",
        classes=classes,
    )


def labelled_rows(
    table: pa.Table, *, target: str, classes: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and predicted class codes and probabilities of the rows that have all three."""
    truth = class_codes(table.column(target), classes)
    predicted = class_codes(table.column(PREDICTION), classes)
    proba = probability_matrix(table, classes)
    usable = ~np.isnan(truth) & ~np.isnan(predicted) & ~np.isnan(proba).any(axis=1)
    return truth[usable].astype(np.int64), predicted[usable].astype(np.int64), proba[usable]


def holdout_metrics(
    table: pa.Table, *, target: str, classes: tuple[str, ...]
) -> ClassifierHoldoutMetrics:
    truth, predicted, proba = labelled_rows(table, target=target, classes=classes)
    if truth.size == 0:
        raise InputError(
            f"the reference has no rows with target {target!r}, a predicted class and every "
            "class probability; expected labelled rows"
        )
    m = classification_metrics(truth, predicted, proba, classes)
    return ClassifierHoldoutMetrics(
        accuracy=m.accuracy,
        balanced_accuracy=m.balanced_accuracy,
        f1_macro=m.f1_macro,
        roc_auc=m.roc_auc,
        log_loss=m.log_loss,
        brier=m.brier,
    )


def fit_breast_cancer_classifier(*, seed: int = 42) -> tuple[Any, pd.DataFrame, str]:
    """The demo's classifier: a logistic regression on scikit-learn's shipped breast cancer
    table (binary: 0 malignant, 1 benign), fitted on half the rows; the other half is returned
    as the out-of-sample reference, with the target column's name."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = load_breast_cancer(as_frame=True).frame
    train, reference = train_test_split(table, test_size=0.5, random_state=seed)
    features = [c for c in table.columns if c != "target"]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    pipeline.fit(train[features], train["target"])
    return pipeline, reference.reset_index(drop=True), "target"

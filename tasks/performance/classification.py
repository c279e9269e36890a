"""A classifier's classes and its performance on labelled rows (docs/contract.md, "Classifiers").

Classes are kept in their string form, the one the drift tests count categories with
(`tasks.stats.columns.as_categories`: `1`, `1.0` and `"1"` are one class, booleans are `true` and
`false`), so string, integer and boolean classes give the same numbers. A batch holds the
predicted class in `prediction` and one probability per class in `proba_<class>`; the metrics
take them as class codes (the index of a class in the card's `classes`) and a rows x classes
matrix. The last class of a binary model is its positive class (scikit-learn's `classes_[1]`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.stats.columns import as_categories

PROBA_PREFIX = "proba_"


def proba_column(label: str) -> str:
    """The batch column of a class's probability."""
    return f"{PROBA_PREFIX}{label}"


def class_strings(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A class column (string, integer, boolean or dictionary) in its string form; nulls stay."""
    return as_categories(column)


def ordered_classes(labels: Iterable[str]) -> tuple[str, ...]:
    """Classes in their natural order: numbers by value, `false` before `true`, else by text
    (the order scikit-learn's `classes_` would have for the same values)."""
    distinct = sorted(set(labels))
    try:
        return tuple(sorted(distinct, key=float))
    except ValueError:
        return tuple(distinct)  # "false" < "true" already


def class_codes(column: pa.ChunkedArray | pa.Array, classes: Sequence[str]) -> np.ndarray:
    """Each value's index among `classes` as float64; a null, or a class not among them, is NaN.

    Only the distinct values of each chunk are put in their string form (a dictionary
    encoding), so a batch of a million integer classes is never turned into a million strings.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    known = pa.array(list(classes), pa.string())
    out = [np.empty(0, dtype=np.float64)]
    for chunk in chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)
        lookup = pc.index_in(class_strings(encoded.dictionary), value_set=known)
        codes = np.asarray(
            pc.cast(lookup, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        indices = np.asarray(
            pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        found = np.full(indices.size, np.nan)
        present = indices >= 0
        found[present] = codes[indices[present]]
        out.append(found)
    return np.concatenate(out)


def unseen_classes(column: pa.ChunkedArray | pa.Array, classes: Sequence[str]) -> list[str]:
    """The distinct present values of a class column that are not among `classes`."""
    values = pc.unique(class_strings(column)).drop_null().to_pylist()
    return sorted(set(values) - set(classes))


def probability_matrix(table: pa.Table, classes: Sequence[str]) -> np.ndarray:
    """The `proba_<class>` columns as a rows x classes float64 matrix (NaN for missing)."""
    if not classes:
        return np.empty((table.num_rows, 0))
    columns = [
        np.asarray(
            pc.cast(table.column(proba_column(c)), pa.float64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        for c in classes
    ]
    return np.column_stack(columns)


@dataclass(frozen=True)
class ClassScores:
    """One class's precision, recall and F1 (NaN when it is neither true nor predicted)."""

    label: str
    support: int  # labelled rows whose true class it is
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ReliabilityBin:
    """Rows whose probability fell in [lower, upper): their mean probability and how often the
    event it gives the chance of happened (binary: the positive class is true; multiclass: the
    predicted class is right)."""

    lower: float
    upper: float
    n: int
    mean_probability: float
    observed_ratio: float


RELIABILITY_BINS = 10


@dataclass(frozen=True)
class ClassificationMetrics:
    """A classifier's performance on labelled rows, each as scikit-learn computes it."""

    accuracy: float
    balanced_accuracy: float  # mean recall over the classes present among the labels
    precision_macro: float  # macro means: over the classes that are true or predicted
    recall_macro: float
    f1_macro: float
    roc_auc: float  # binary: of the positive class; multiclass: one-vs-rest macro; NaN if undefined
    log_loss: float  # natural log, probabilities clipped to [eps, 1 - eps]
    brier: float  # binary: on the positive class; multiclass: sum over classes, mean over rows
    per_class: tuple[ClassScores, ...]
    reliability: tuple[ReliabilityBin, ...] = ()  # the non-empty bins, for the report

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ClassificationMetrics:
        def number(value: Any) -> float:
            return math.nan if value is None else float(value)

        return cls(
            **{k: number(v) for k, v in raw.items() if k not in ("per_class", "reliability")},
            reliability=tuple(
                ReliabilityBin(
                    lower=float(b["lower"]),
                    upper=float(b["upper"]),
                    n=int(b["n"]),
                    mean_probability=float(b["mean_probability"]),
                    observed_ratio=float(b["observed_ratio"]),
                )
                for b in raw.get("reliability", ())
            ),
            per_class=tuple(
                ClassScores(
                    label=str(c["label"]),
                    support=int(c["support"]),
                    precision=number(c["precision"]),
                    recall=number(c["recall"]),
                    f1=number(c["f1"]),
                )
                for c in raw.get("per_class", ())
            ),
        )


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the rows where `positive`, ties counted half
    (the Mann-Whitney form of scikit-learn's trapezoids); NaN when one class is absent."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    # rows tied on a score share the mean of their 1-based ranks
    mean_rank = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = float(np.sum(mean_rank[positive[order]]))
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_auc(truth: np.ndarray, proba: np.ndarray) -> float:
    """Binary: AUC of the positive (last) class's probability; multiclass: the mean of each
    class's one-vs-rest AUC, NaN when a class is absent from `truth` (as scikit-learn's)."""
    k = proba.shape[1]
    if k == 2:
        return binary_roc_auc(truth == 1, proba[:, 1])
    scores = [binary_roc_auc(truth == c, proba[:, c]) for c in range(k)]
    return float(np.mean(scores))


def log_loss(truth: np.ndarray, proba: np.ndarray) -> float:
    eps = np.finfo(np.float64).eps
    chosen = np.clip(proba[np.arange(truth.size), truth], eps, 1 - eps)
    return float(-np.mean(np.log(chosen)))


def brier(truth: np.ndarray, proba: np.ndarray) -> float:
    k = proba.shape[1]
    if k == 2:
        return float(np.mean(((truth == 1) - proba[:, 1]) ** 2))
    onehot = truth[:, None] == np.arange(k)[None, :]
    return float(np.mean(np.sum((onehot - proba) ** 2, axis=1)))


def reliability(
    truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray
) -> tuple[ReliabilityBin, ...]:
    """The reliability diagram's bins (RELIABILITY_BINS equal ones, the empty left out)."""
    if proba.shape[1] == 2:
        p, happened = proba[:, 1], truth == 1
    else:
        p, happened = proba[np.arange(truth.size), predicted], truth == predicted
    bins = np.minimum((p * RELIABILITY_BINS).astype(np.int64), RELIABILITY_BINS - 1)
    n = np.bincount(bins, minlength=RELIABILITY_BINS)
    total = np.bincount(bins, weights=p, minlength=RELIABILITY_BINS)
    hits = np.bincount(bins, weights=happened.astype(np.float64), minlength=RELIABILITY_BINS)
    return tuple(
        ReliabilityBin(
            lower=b / RELIABILITY_BINS,
            upper=(b + 1) / RELIABILITY_BINS,
            n=int(n[b]),
            mean_probability=float(total[b] / n[b]),
            observed_ratio=float(hits[b] / n[b]),
        )
        for b in np.flatnonzero(n)
    )


def classification_metrics(
    truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> ClassificationMetrics:
    """The metrics of labelled rows: true and predicted class codes (ints) and the probabilities
    (rows x classes). At least one row."""
    truth = np.asarray(truth, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = len(classes)
    confusion = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    hits = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_n = confusion.sum(axis=0)
    precision = _ratio(hits, predicted_n.astype(np.float64))
    recall = _ratio(hits, support.astype(np.float64))
    f1 = _ratio(2 * hits, (support + predicted_n).astype(np.float64))
    seen = (support + predicted_n) > 0  # scikit-learn's labels: true or predicted somewhere
    present = support > 0
    per_class = tuple(
        ClassScores(
            label=label,
            support=int(support[i]),
            precision=float(precision[i]) if seen[i] else math.nan,
            recall=float(recall[i]) if seen[i] else math.nan,
            f1=float(f1[i]) if seen[i] else math.nan,
        )
        for i, label in enumerate(classes)
    )
    return ClassificationMetrics(
        accuracy=float(np.mean(truth == predicted)),
        balanced_accuracy=float(np.mean(recall[present])),
        precision_macro=float(np.mean(precision[seen])),
        recall_macro=float(np.mean(recall[seen])),
        f1_macro=float(np.mean(f1[seen])),
        roc_auc=roc_auc(truth, proba),
        log_loss=log_loss(truth, proba),
        brier=brier(truth, proba),
        per_class=per_class,
        reliability=reliability(truth, predicted, proba),
    )

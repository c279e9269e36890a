"""A classifier's performance before its labels: confidence-based performance estimation (CBPE).

Fitted once per version on the reference's labelled rows: one isotonic map per class from its
probability to the chance that the class is true, kept only when it makes the probabilities
better calibrated out of fold (`CALIBRATION_FOLDS`-fold cross-validation on the reference, by
expected calibration error). Every night, with calibrated probabilities p:

- expected accuracy: the mean of p for the predicted class; its sampling error is that of a
  sum of independent Bernoulli(p) draws.
- expected ROC AUC: the rows ordered by the model's own scores (the raw probability, which the
  realized AUC ranks by: calibrated scores tie where the isotonic map is flat, the bias of
  ranking by them), each row counted p positive and 1 - p negative, the area under the expected
  ROC curve; multiclass: one-vs-rest, the mean over classes. Its sampling error is Hanley and
  McNeil's with the expected class counts.

The band adds the level error the calibration showed out of fold on the reference. It follows
covariate shift and cannot see concept drift (a change of P(class | score)). The method and
its measurement: docs/statistics.md, "Classifiers".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CALIBRATION_FOLDS = 5
ECE_BINS = 10
MIN_LABELLED_ROWS = 100  # fewer labelled reference rows: no estimate
MAX_FIT_ROWS = 200_000  # a larger reference is calibrated on a seeded sample of this many rows
BAND_Z = 1.96
SEED = 0


@dataclass(frozen=True)
class IsotonicMap:
    """A fitted isotonic regression as its knots: np.interp with clipping, as scikit-learn's
    `IsotonicRegression(out_of_bounds="clip").predict` is."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.interp(values, np.asarray(self.x), np.asarray(self.y))


@dataclass(frozen=True)
class CalibrationQuality:
    """How the probabilities and the estimate held on the reference, out of fold."""

    labelled_rows: int
    ece_raw: float  # expected calibration error of the model's probabilities
    ece_calibrated: float  # of the isotonic maps, each fitted without the rows it is judged on
    calibrated: bool  # the maps are used: they lowered the error
    accuracy_realized: float  # over the folds
    accuracy_estimated: float
    roc_auc_realized: float
    roc_auc_estimated: float
    accuracy_level_error: float  # what the folds' errors showed beyond their sampling error
    roc_auc_level_error: float

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CalibrationQuality:
        return cls(
            labelled_rows=int(raw["labelled_rows"]),
            calibrated=bool(raw["calibrated"]),
            **{
                k: math.nan if v is None else float(v)
                for k, v in raw.items()
                if k not in ("labelled_rows", "calibrated")
            },
        )


@dataclass(frozen=True)
class Calibration:
    """A version's CBPE: its classes, the maps (empty when not needed) and their quality."""

    classes: tuple[str, ...]
    maps: tuple[IsotonicMap, ...]
    quality: CalibrationQuality

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "maps": [{"x": list(m.x), "y": list(m.y)} for m in self.maps],
            "quality": {
                k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self.quality).items()
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Calibration:
        maps = tuple(
            IsotonicMap(tuple(map(float, m["x"])), tuple(map(float, m["y"]))) for m in raw["maps"]
        )
        quality = CalibrationQuality.from_dict(raw["quality"])
        return cls(tuple(map(str, raw["classes"])), maps, quality)


@dataclass(frozen=True)
class ClassificationEstimate:
    """A batch's accuracy and ROC AUC estimated from its probabilities, before any label."""

    n_rows: int  # rows of the batch
    n_estimated: int  # rows with a predicted class and every probability
    accuracy: float
    accuracy_lower: float
    accuracy_upper: float
    roc_auc: float  # NaN when no row can be positive or negative
    roc_auc_lower: float
    roc_auc_upper: float
    calibrated: bool  # the probabilities were calibrated on the reference first


# the pieces ----------------------------------------------------------------------------------
def calibrate(maps: Sequence[IsotonicMap], proba: np.ndarray) -> np.ndarray:
    """The probabilities through their class's map; multiclass rows renormalised to 1."""
    if not maps:
        return proba
    out = np.column_stack([m(proba[:, i]) for i, m in enumerate(maps)])
    if proba.shape[1] == 2:
        # one map, on the positive class: the negative is its complement
        return np.column_stack([1.0 - out[:, 1], out[:, 1]])
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / out.shape[1])
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), uniform)


def expected_accuracy(calibrated: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """The mean chance that the predicted class is right, and the sampling error of the share
    of rows that will turn out right."""
    right = calibrated[np.arange(predicted.size), predicted]
    return float(np.mean(right)), float(math.sqrt(np.sum(right * (1 - right)))) / predicted.size


def expected_binary_auc(score: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The AUC of `score` expected when each row is positive with chance `p`, and its
    Hanley-McNeil standard error; NaN when the expected positives or negatives are 0."""
    positives = float(np.sum(p))
    negatives = float(score.size) - positives
    if positives <= 0 or negatives <= 0:
        return math.nan, math.nan
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    pos = np.add.reduceat(p[order], starts)
    neg = (np.diff(np.r_[starts, ordered.size])) - pos
    below = np.cumsum(neg) - neg  # expected negatives scored lower than the group
    auc = float(np.sum(pos * (below + 0.5 * neg))) / (positives * negatives)
    auc = min(max(auc, 0.0), 1.0)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return auc, math.sqrt(max(variance, 0.0))


def expected_auc(raw: np.ndarray, calibrated: np.ndarray) -> tuple[float, float]:
    """Binary: of the positive class; multiclass: one-vs-rest, the mean over classes."""
    k = raw.shape[1]
    if k == 2:
        return expected_binary_auc(raw[:, 1], calibrated[:, 1])
    parts = [expected_binary_auc(raw[:, c], calibrated[:, c]) for c in range(k)]
    aucs = np.array([a for a, _ in parts])
    errors = np.array([e for _, e in parts])
    return float(np.mean(aucs)), float(np.sqrt(np.sum(errors**2))) / k


def _realized_auc(truth: np.ndarray, raw: np.ndarray) -> float:
    from tasks.performance.classification import roc_auc

    return roc_auc(truth, raw)


def expected_calibration_error(truth: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest, over classes: the row-weighted |mean probability - share true| of
    `ECE_BINS` equal-width bins, averaged over the classes (binary: the positive class)."""
    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    errors = []
    for c in columns:
        p, hit = proba[:, c], (truth == c).astype(np.float64)
        bins = np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        gap = np.bincount(bins, weights=p - hit, minlength=ECE_BINS)
        errors.append(float(np.sum(np.abs(gap))) / p.size)
    return float(np.mean(errors))


# fitting -------------------------------------------------------------------------------------
def _fit_maps(truth: np.ndarray, proba: np.ndarray) -> tuple[IsotonicMap, ...]:
    from sklearn.isotonic import IsotonicRegression

    k = proba.shape[1]
    maps = []
    for c in range(k):
        if k == 2 and c == 0:
            maps.append(IsotonicMap((0.0, 1.0), (0.0, 1.0)))  # unused: the complement is
            continue
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        fitted.fit(proba[:, c], (truth == c).astype(np.float64))
        maps.append(
            IsotonicMap(
                tuple(map(float, fitted.X_thresholds_)), tuple(map(float, fitted.y_thresholds_))
            )
        )
    return tuple(maps)


def _level_error(estimated: np.ndarray, realized: np.ndarray, sampling: np.ndarray) -> float:
    """The folds' spread of estimated - realized beyond what their sampling errors explain."""
    finite = np.isfinite(estimated) & np.isfinite(realized) & np.isfinite(sampling)
    if not finite.any():
        return 0.0
    excess = np.mean((estimated - realized)[finite] ** 2) - np.mean(sampling[finite] ** 2)
    return float(math.sqrt(max(excess, 0.0)))


def fit_calibration(
    truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> Calibration | None:
    """CBPE for the reference's labelled rows (class codes and probabilities); None with
    fewer than MIN_LABELLED_ROWS of them, fitted on a seeded sample of MAX_FIT_ROWS of more."""
    if truth.size < MIN_LABELLED_ROWS:
        return None
    if truth.size > MAX_FIT_ROWS:
        kept = np.sort(np.random.default_rng(SEED).choice(truth.size, MAX_FIT_ROWS, replace=False))
        truth, predicted, proba = truth[kept], predicted[kept], proba[kept]
    n = truth.size
    folds = np.random.default_rng(SEED).permutation(n) % CALIBRATION_FOLDS
    out_of_fold = np.empty_like(proba)
    for f in range(CALIBRATION_FOLDS):
        held = folds == f
        out_of_fold[held] = calibrate(_fit_maps(truth[~held], proba[~held]), proba[held])
    ece_raw = expected_calibration_error(truth, proba)
    ece_calibrated = expected_calibration_error(truth, out_of_fold)
    needed = ece_calibrated < ece_raw
    used = out_of_fold if needed else proba
    rows = []
    for f in range(CALIBRATION_FOLDS):
        held = folds == f
        accuracy, accuracy_error = expected_accuracy(used[held], predicted[held])
        auc, auc_error = expected_auc(proba[held], used[held])
        realized_accuracy = float(np.mean(truth[held] == predicted[held]))
        realized_auc = _realized_auc(truth[held], proba[held])
        rows.append((accuracy, realized_accuracy, accuracy_error, auc, realized_auc, auc_error))
    table = np.array(rows, dtype=np.float64)
    quality = CalibrationQuality(
        labelled_rows=int(n),
        ece_raw=ece_raw,
        ece_calibrated=ece_calibrated,
        calibrated=bool(needed),
        accuracy_realized=float(np.mean(truth == predicted)),
        accuracy_estimated=expected_accuracy(used, predicted)[0],
        roc_auc_realized=_realized_auc(truth, proba),
        roc_auc_estimated=expected_auc(proba, used)[0],
        accuracy_level_error=_level_error(table[:, 0], table[:, 1], table[:, 2]),
        roc_auc_level_error=_level_error(table[:, 3], table[:, 4], table[:, 5]),
    )
    maps = _fit_maps(truth, proba) if needed else ()
    return Calibration(tuple(classes), maps, quality)


# estimating ----------------------------------------------------------------------------------
def estimate_classification(
    calibration: Calibration | None, predicted: np.ndarray, proba: np.ndarray, *, n_rows: int
) -> ClassificationEstimate | None:
    """The estimate for a batch's predicted class codes (float, NaN where missing) and
    probabilities; None without a calibration or a row to estimate."""
    if calibration is None:
        return None
    usable = ~np.isnan(predicted) & ~np.isnan(proba).any(axis=1)
    if not usable.any():
        return None
    raw = proba[usable]
    codes = predicted[usable].astype(np.int64)
    calibrated = calibrate(calibration.maps, raw)
    quality = calibration.quality
    accuracy, accuracy_sampling = expected_accuracy(calibrated, codes)
    auc, auc_sampling = expected_auc(raw, calibrated)
    accuracy_error = math.hypot(accuracy_sampling, quality.accuracy_level_error)
    auc_error = math.hypot(auc_sampling, quality.roc_auc_level_error)
    return ClassificationEstimate(
        n_rows=n_rows,
        n_estimated=int(usable.sum()),
        accuracy=accuracy,
        accuracy_lower=max(accuracy - BAND_Z * accuracy_error, 0.0),
        accuracy_upper=min(accuracy + BAND_Z * accuracy_error, 1.0),
        roc_auc=auc,
        roc_auc_lower=max(auc - BAND_Z * auc_error, 0.0),
        roc_auc_upper=min(auc + BAND_Z * auc_error, 1.0),
        calibrated=bool(calibration.maps),
    )

"""CBPE (tasks/performance/cbpe.py): calibration when needed, expected accuracy and ROC AUC close
to the realized ones, a band that covers them, and NannyML's known pitfalls avoided."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tasks.performance.cbpe import (
    Calibration,
    calibrate,
    estimate_classification,
    expected_binary_auc,
    fit_calibration,
)
from tasks.performance.classification import binary_roc_auc, roc_auc


def _calibrated_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Probabilities that are right (the label is drawn from them), the predicted class, and
    the label."""
    p = rng.beta(0.8, 0.8, size=n)
    truth = (rng.random(n) < p).astype(np.int64)
    return np.column_stack([1 - p, p]), (p >= 0.5).astype(np.int64), truth


def test_calibrated_probabilities_estimate_the_realized_accuracy_and_auc() -> None:
    rng = np.random.default_rng(0)
    proba, predicted, truth = _calibrated_sample(rng, 4000)
    calibration = fit_calibration(truth, predicted, proba, ["0", "1"])
    assert calibration is not None
    covered_accuracy = covered_auc = 0
    chunks = 60
    for _ in range(chunks):
        chunk_proba, chunk_pred, chunk_truth = _calibrated_sample(rng, 500)
        estimate = estimate_classification(
            calibration, chunk_pred.astype(float), chunk_proba, n_rows=500
        )
        assert estimate is not None
        accuracy = float(np.mean(chunk_pred == chunk_truth))
        auc = roc_auc(chunk_truth, chunk_proba)
        covered_accuracy += estimate.accuracy_lower <= accuracy <= estimate.accuracy_upper
        covered_auc += estimate.roc_auc_lower <= auc <= estimate.roc_auc_upper
    assert covered_accuracy >= 0.9 * chunks
    assert covered_auc >= 0.9 * chunks


def test_overconfident_probabilities_are_calibrated_and_the_estimate_follows_the_truth() -> None:
    rng = np.random.default_rng(1)
    proba, predicted, truth = _calibrated_sample(rng, 4000)
    squashed = np.clip((proba - 0.5) * 3 + 0.5, 0, 1)  # far more sure than it is right
    calibration = fit_calibration(truth, predicted, squashed, ["no", "yes"])
    assert calibration is not None and calibration.quality.calibrated
    assert calibration.quality.ece_calibrated < calibration.quality.ece_raw
    test_proba, test_pred, test_truth = _calibrated_sample(rng, 5000)
    test_squashed = np.clip((test_proba - 0.5) * 3 + 0.5, 0, 1)
    estimate = estimate_classification(
        calibration, test_pred.astype(float), test_squashed, n_rows=5000
    )
    assert estimate is not None and estimate.calibrated
    realized = float(np.mean(test_pred == test_truth))
    assert estimate.accuracy == pytest.approx(realized, abs=0.02)
    raw = float(np.mean(np.max(test_squashed, axis=1)))  # the uncalibrated guess is far off
    assert abs(raw - realized) > 0.1


def test_expected_auc_ranks_by_the_models_scores_not_the_calibrated_steps() -> None:
    # NannyML ranks by calibrated scores: the isotonic map ties many rows, and the expected AUC
    # of those ties is not the AUC the model's own scores will realize
    rng = np.random.default_rng(2)
    score = rng.random(3000)
    p = score**2  # calibrated chance of the positive class, a monotone map of the score
    steps = np.round(p, 1)  # a coarse calibration: ties across wide ranges of scores
    realized = [binary_roc_auc(rng.random(score.size) < p, score) for _ in range(200)]
    ours, _ = expected_binary_auc(score, steps)
    by_steps, _ = expected_binary_auc(steps, steps)
    assert abs(ours - np.mean(realized)) < abs(by_steps - np.mean(realized))
    assert ours == pytest.approx(np.mean(realized), abs=0.01)


def test_no_estimate_without_calibration_or_rows_and_nan_auc_for_one_possible_class() -> None:
    proba = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert estimate_classification(None, np.array([1.0, 1.0]), proba, n_rows=2) is None
    rng = np.random.default_rng(3)
    sample_proba, sample_pred, sample_truth = _calibrated_sample(rng, 500)
    calibration = fit_calibration(sample_truth, sample_pred, sample_proba, ["0", "1"])
    assert isinstance(calibration, Calibration)
    nothing = estimate_classification(
        calibration, np.array([np.nan]), np.array([[0.5, 0.5]]), n_rows=1
    )
    assert nothing is None
    certain = estimate_classification(
        Calibration(("0", "1"), (), calibration.quality), np.array([1.0, 1.0]), proba, n_rows=2
    )
    assert certain is not None and certain.accuracy == 1.0 and math.isnan(certain.roc_auc)


def test_too_few_labelled_reference_rows_give_no_calibration() -> None:
    rng = np.random.default_rng(4)
    proba, predicted, truth = _calibrated_sample(rng, 50)
    assert fit_calibration(truth, predicted, proba, ["0", "1"]) is None


def test_multiclass_calibration_keeps_rows_summing_to_one() -> None:
    rng = np.random.default_rng(5)
    proba = rng.dirichlet(np.ones(3), size=2000)
    truth = np.array([rng.choice(3, p=row) for row in proba])
    calibration = fit_calibration(
        truth, proba.argmax(axis=1), proba**2 / (proba**2).sum(axis=1, keepdims=True), list("abc")
    )
    assert calibration is not None
    out = calibrate(calibration.maps, proba)
    assert np.allclose(out.sum(axis=1), 1.0)


def test_covariate_shift_on_breast_cancer_keeps_the_estimate_close_and_covered() -> None:
    """Chunks drawn with a shift in one input (rows of large tumours far more often): the
    estimate stays near the realized accuracy and AUC and its band covers them on >= 90 %."""
    data = load_breast_cancer()
    x, y = data.data, data.target
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    fit, reference, pool = order[:200], order[200:400], order[400:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    model.fit(x[fit], y[fit])
    ref_proba = model.predict_proba(x[reference])
    calibration = fit_calibration(y[reference], ref_proba.argmax(axis=1), ref_proba, ["0", "1"])
    assert calibration is not None
    radius = x[pool, 0]
    covered, errors = 0, []
    chunks = 40
    for i in range(chunks):
        strength = 3.0 * i / chunks  # from no shift to a strong one
        weight = np.exp(strength * (radius - radius.mean()) / radius.std())
        rows = pool[rng.choice(pool.size, size=150, p=weight / weight.sum())]
        proba = model.predict_proba(x[rows])
        predicted = proba.argmax(axis=1)
        estimate = estimate_classification(calibration, predicted.astype(float), proba, n_rows=150)
        assert estimate is not None
        accuracy = float(np.mean(predicted == y[rows]))
        covered += estimate.accuracy_lower <= accuracy <= estimate.accuracy_upper
        errors.append(abs(estimate.accuracy - accuracy))
    assert covered >= 0.9 * chunks
    assert float(np.mean(errors)) < 0.05

"""The classification metrics equal scikit-learn's, on random and adversarial inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from tasks.performance.classification import (
    class_codes,
    class_strings,
    classification_metrics,
    ordered_classes,
)


def _sklearn(truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray, k: int) -> dict:
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k == 2:
            auc = skm.roc_auc_score(truth, proba[:, 1]) if len(set(truth)) == 2 else math.nan
            brier = skm.brier_score_loss(truth, proba[:, 1], pos_label=1, labels=labels)
        else:
            try:
                auc = skm.roc_auc_score(truth, proba, multi_class="ovr", labels=labels)
            except ValueError:
                auc = math.nan
            brier = skm.brier_score_loss(truth, proba, labels=labels)
        p, r, f, _ = skm.precision_recall_fscore_support(truth, predicted, average="macro")
        return {
            "accuracy": skm.accuracy_score(truth, predicted),
            "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
            "precision_macro": p,
            "recall_macro": r,
            "f1_macro": f,
            "roc_auc": auc,
            "log_loss": skm.log_loss(truth, proba, labels=labels),
            "brier": brier,
        }


def _per_class_sklearn(truth: np.ndarray, predicted: np.ndarray) -> dict:
    seen = sorted(set(truth) | set(predicted))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(truth, predicted, labels=seen)
    return {c: (p[i], r[i], f[i]) for i, c in enumerate(seen)}


def _assert_equal(truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray) -> None:
    k = proba.shape[1]
    ours = classification_metrics(truth, predicted, proba, [str(c) for c in range(k)])
    expected = _sklearn(truth, predicted, proba, k)
    for name, value in expected.items():
        got = getattr(ours, name)
        if math.isnan(value):
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(value, abs=1e-12, rel=1e-12), name
    for code, (p, r, f) in _per_class_sklearn(truth, predicted).items():
        scores = ours.per_class[code]
        assert (scores.precision, scores.recall, scores.f1) == pytest.approx((p, r, f), abs=1e-12)


def _random(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, ...]:
    proba = rng.dirichlet(np.ones(k), size=n)
    truth = np.array([rng.choice(k, p=row) for row in proba])
    predicted = proba.argmax(axis=1)
    return truth, predicted, proba


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", range(6))
def test_random_batches_equal_sklearn(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    _assert_equal(*_random(rng, int(rng.integers(2, 400)), k))


@pytest.mark.parametrize("k", [2, 4])
def test_a_class_absent_from_the_batch_equals_sklearn_and_auc_is_nan(k: int) -> None:
    rng = np.random.default_rng(7)
    truth, predicted, proba = _random(rng, 60, k)
    truth = np.where(truth == 0, 1, truth)  # no row of class 0 is true
    _assert_equal(truth, predicted, proba)
    assert math.isnan(classification_metrics(truth, predicted, proba, list("abcd")[:k]).roc_auc)


@pytest.mark.parametrize("k", [2, 3])
def test_one_row_equals_sklearn(k: int) -> None:
    proba = np.full((1, k), 1.0 / k)
    _assert_equal(np.array([1]), np.array([0]), proba)


def test_probabilities_of_exactly_zero_and_one_equal_sklearn() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    truth = np.array([0, 1, 1, 0, 1])  # two confident mistakes: the clipped log loss is finite
    _assert_equal(truth, proba.argmax(axis=1), proba)
    multi = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    _assert_equal(np.array([0, 1, 2]), np.array([0, 2, 1]), multi)


def test_ties_in_the_scores_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    proba1 = rng.choice([0.1, 0.4, 0.6, 0.9], size=300)
    proba = np.column_stack([1 - proba1, proba1])
    truth = (rng.random(300) < proba1).astype(int)
    _assert_equal(truth, (proba1 >= 0.5).astype(int), proba)
    three = rng.dirichlet(np.ones(3), size=5).round(1)
    three = np.repeat(three / three.sum(axis=1, keepdims=True), 40, axis=0)
    _assert_equal(rng.integers(0, 3, size=200), rng.integers(0, 3, size=200), three)


def test_a_class_never_predicted_nor_true_is_left_out_of_the_macro_means() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]])
    ours = classification_metrics(np.array([0, 1]), np.array([0, 1]), proba, ["a", "b", "c"])
    assert ours.f1_macro == 1.0
    assert math.isnan(ours.per_class[2].f1)


def test_string_integer_and_boolean_classes_share_one_spelling() -> None:
    assert class_strings(pa.array([1, 0, None])).to_pylist() == ["1", "0", None]
    assert class_strings(pa.array([1.0, 0.0])).to_pylist() == ["1", "0"]
    assert class_strings(pa.array([True, False])).to_pylist() == ["true", "false"]
    assert ordered_classes(["10", "2", "1"]) == ("1", "2", "10")
    assert ordered_classes(["true", "false"]) == ("false", "true")
    assert ordered_classes(["yes", "no"]) == ("no", "yes")
    codes = class_codes(pa.array(["b", None, "z", "a"]), ["a", "b"])
    assert codes[0] == 1 and codes[3] == 0 and np.isnan(codes[1]) and np.isnan(codes[2])


def test_class_codes_of_chunked_dictionary_and_null_values_follow_the_string_form() -> None:
    chunked = pa.chunked_array([[1, None], [0, 5]])
    codes = class_codes(chunked, ["0", "1"])
    assert codes[0] == 1 and codes[2] == 0 and np.isnan(codes[1]) and np.isnan(codes[3])
    encoded = pa.array(["yes", "no", None, "yes"]).dictionary_encode()
    assert class_codes(encoded, ["no", "yes"])[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0]
    assert class_codes(pa.array([True, False]), ["false", "true"]).tolist() == [1.0, 0.0]

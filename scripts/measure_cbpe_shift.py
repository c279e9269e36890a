"""Measure the classifier estimate before labels (CBPE) under covariate shift on the tables
scikit-learn ships, binary and multiclass:

    .venv/bin/python scripts/measure_cbpe_shift.py [--chunks 40] [--rows 300]

Per table a logistic regression is fitted on a third of the rows and calibrated
(`tasks.performance.cbpe.fit_calibration`) on another third; chunks are drawn with replacement
from the last third with weight exp(s z) of one input summary z (breast cancer: mean radius;
digits: total ink), s rising from 0 to `--max-shift` over the chunks. Per table it prints the mean
|estimate - realized| of accuracy and ROC AUC, and how often the band covers the realized value,
for the unshifted and the most shifted half of the chunks.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tasks.performance.cbpe import estimate_classification, fit_calibration
from tasks.performance.classification import roc_auc


def _table(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if name == "breast_cancer":
        x, y = load_breast_cancer(return_X_y=True)
        return x, y, x[:, 0]
    x, y = load_digits(return_X_y=True)
    return x, y, x.sum(axis=1)


def measure(name: str, *, chunks: int, rows: int, max_shift: float) -> dict[str, object]:
    x, y, summary = _table(name)
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    third = y.size // 3
    fit, reference, pool = order[:third], order[third : 2 * third], order[2 * third :]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(x[fit], y[fit])
    proba = model.predict_proba(x[reference])
    classes = [str(c) for c in model.classes_]
    calibration = fit_calibration(y[reference], proba.argmax(axis=1), proba, classes)
    assert calibration is not None
    z = (summary[pool] - summary[pool].mean()) / summary[pool].std()
    found = []
    for i in range(chunks):
        weight = np.exp(max_shift * i / chunks * z)
        drawn = pool[rng.choice(pool.size, size=rows, p=weight / weight.sum())]
        p = model.predict_proba(x[drawn])
        predicted = p.argmax(axis=1)
        estimate = estimate_classification(calibration, predicted.astype(float), p, n_rows=rows)
        assert estimate is not None
        accuracy, auc = float(np.mean(predicted == y[drawn])), roc_auc(y[drawn], p)
        found.append(
            (
                abs(estimate.accuracy - accuracy),
                estimate.accuracy_lower <= accuracy <= estimate.accuracy_upper,
                abs(estimate.roc_auc - auc),
                estimate.roc_auc_lower <= auc <= estimate.roc_auc_upper,
            )
        )
    table = np.array(found, dtype=np.float64)
    halves = {"unshifted half": table[: chunks // 2], "shifted half": table[chunks // 2 :]}
    out: dict[str, object] = {"calibrated": calibration.quality.calibrated}
    for label, part in halves.items():
        finite = part[np.isfinite(part[:, 2])]
        out[label] = {
            "accuracy_mean_abs_error": round(float(part[:, 0].mean()), 4),
            "accuracy_band_coverage": round(float(part[:, 1].mean()), 3),
            "roc_auc_mean_abs_error": round(float(finite[:, 2].mean()), 4),
            "roc_auc_band_coverage": round(float(finite[:, 3].mean()), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--max-shift", type=float, default=2.0)
    args = parser.parse_args()
    results = {
        name: measure(name, chunks=args.chunks, rows=args.rows, max_shift=args.max_shift)
        for name in ("breast_cancer", "digits")
    }
    for name, found in results.items():
        print(name, found)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

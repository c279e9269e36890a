"""Tiny seeded frames and cards for unit tests."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from model_registry.registry import FeatureSpec, HoldoutMetrics, ModelCard


def card(
    *,
    numeric: tuple[str, ...] = ("carat", "depth"),
    categorical: tuple[str, ...] = ("cut",),
    target: str = "price",
    name: str = "toy",
) -> ModelCard:
    features = tuple(FeatureSpec(n, "numeric") for n in numeric) + tuple(
        FeatureSpec(c, "categorical", ("a", "b", "c")) for c in categorical
    )
    return ModelCard(
        name=name,
        version="v1",
        created_at="2026-01-01T00:00:00+00:00",
        target=target,
        features=features,
        metrics=HoldoutMetrics(mae=1.0, rmse=1.5, mape=0.1, r2=0.9),
        sha256={},
        libraries={},
    )


def batch(
    rows: int = 50,
    *,
    seed: int = 0,
    day: date = date(2026, 3, 2),
    shift: float = 0.0,
    target: str | None = None,
) -> pa.Table:
    """A scored batch for `card()`: carat and depth numeric, cut categorical."""
    rng = np.random.default_rng(seed)
    columns = {
        "row_id": [f"{day}-{i}" for i in range(rows)],
        "carat": rng.normal(1.0 + shift, 0.3, rows),
        "depth": rng.normal(60.0, 2.0, rows),
        "cut": rng.choice(["a", "b", "c"], rows),
        "prediction": rng.normal(100.0, 10.0, rows),
        "model_version": ["v1"] * rows,
    }
    if target:
        columns[target] = rng.normal(100.0, 10.0, rows)
    return pa.table(columns)


def result(
    *,
    rows: int = 200,
    shift: float = 0.0,
    coverage: float = 0.9,
    mae: float = 1.5,
    day: date = date(2026, 3, 2),
):
    """A MonitoringResult computed from builder batches, with one labelled batch in the window."""
    from core.settings import DriftRule
    from tasks.performance.window import BatchPerformance, RegressionMetrics
    from tasks.results.day import MonitoringResult
    from tasks.stats.batch_drift import drift_report
    from tasks.stats.profile import build_profile

    c = card()
    profile = build_profile(batch(2000, seed=99, target=c.target), c)
    drift = drift_report(profile, batch(rows, seed=1, shift=shift, day=day), DriftRule())
    performance = BatchPerformance(
        batch_date=date(2026, 2, 25),
        n_rows=100,
        n_labelled=int(coverage * 100),
        label_coverage_ratio=coverage,
        metrics=RegressionMetrics(mae=mae, rmse=2.0, mape=0.2, r2=0.5),
    )
    return MonitoringResult(
        model=c.name,
        model_version=c.version,
        batch_date=day,
        as_of=date(2026, 3, 3),
        n_rows=rows,
        features=drift.features,
        prediction=drift.prediction,
        performance=(performance,),
        baseline=c.metrics,
        min_label_coverage=0.8,
        unmatched_labels=0,
        warnings=(),
    )

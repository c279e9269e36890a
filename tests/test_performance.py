"""Performance per batch from labels as they arrive (contract sections 1 and 4)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics

from tasks.performance import performance_by_batch, regression_metrics

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def test_metrics_match_scikit_learn_and_mape_leaves_out_zero_targets():
    y = np.array([0.0, 100.0, 200.0, 400.0])
    p = np.array([5.0, 110.0, 180.0, 400.0])
    m = regression_metrics(y, p)
    assert m.mae == pytest.approx(metrics.mean_absolute_error(y, p))
    assert m.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(y, p)))
    assert m.mape == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert m.r2 == pytest.approx(metrics.r2_score(y, p))


def test_coverage_counts_labelled_rows_and_the_latest_arrival_wins():
    scored = pd.DataFrame(
        {"row_id": ["a", "b", "c", "d", "e"], "prediction": [10.0, 20, 30, 40, 50],
         "batch_date": [D1, D1, D1, D1, D2]}
    )  # fmt: skip
    labels = pd.DataFrame(
        {"row_id": ["a", "b", "a", "zzz"], "price": [11.0, 20, 12, 5],
         "arrival_date": [date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 3)]}
    )  # fmt: skip
    batches, unmatched = performance_by_batch(
        pa.Table.from_pandas(scored), pa.Table.from_pandas(labels), target="price"
    )
    first, second = batches
    assert (first.batch_date, first.n_rows, first.n_labelled) == (D1, 4, 2)
    assert first.label_coverage_ratio == 0.5
    assert first.metrics is not None and first.metrics.mae == pytest.approx((2 + 0) / 2)
    assert (second.n_labelled, second.metrics) == (0, None)
    assert unmatched == 1


def test_a_later_null_label_replaces_an_earlier_value_and_ids_may_be_integers():
    scored = pa.table(
        {"row_id": pa.array([1, 2], pa.int64()), "prediction": [10.0, 20.0],
         "batch_date": pa.array([D1, D1], pa.date32())}
    )  # fmt: skip
    labels = pa.table(
        {"row_id": ["1", "1", "2"], "price": [11.0, None, 22.0],
         "arrival_date": pa.array([date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 2)])}
    )  # fmt: skip
    (batch,), unmatched = performance_by_batch(scored, labels, target="price")
    assert (batch.n_rows, batch.n_labelled, unmatched) == (2, 1, 0)
    assert batch.metrics is not None and batch.metrics.mae == pytest.approx(2.0)

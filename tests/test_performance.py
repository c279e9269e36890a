"""Performance per batch from labels as they arrive, as of each run day."""

from __future__ import annotations

import math
import warnings
from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from core.errors import InputError
from tasks.performance.window import Window, regression_metrics

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def test_metrics_match_scikit_learn_and_mape_leaves_out_zero_targets():
    y = np.array([0.0, 100.0, 200.0, 400.0])
    p = np.array([5.0, 110.0, 180.0, 400.0])
    m = regression_metrics(y, p)
    assert m.mae == pytest.approx(metrics.mean_absolute_error(y, p))
    assert m.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(y, p)))
    assert m.mape == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert m.r2 == pytest.approx(metrics.r2_score(y, p))


VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300, 5.0]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@pytest.mark.slow  # 500 examples
@settings(max_examples=500, deadline=None)
@given(
    truth=st.lists(VALUES, min_size=1, max_size=60),
    noise=st.lists(st.floats(-1e3, 1e3), min_size=60, max_size=60),
    exact=st.booleans(),
)
def test_metrics_equal_scikit_learn_to_the_bit(truth, noise, exact):
    y = np.array(truth)
    p = y.copy() if exact else y + np.array(noise[: y.size])
    nonzero = y != 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = (
            metrics.mean_absolute_error(y, p),
            metrics.root_mean_squared_error(y, p),
            metrics.mean_absolute_percentage_error(y[nonzero], p[nonzero])
            if nonzero.any()
            else math.nan,
            metrics.r2_score(y, p) if y.size >= 2 else math.nan,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1e300 squared overflows in both, alike
        m = regression_metrics(y, p)
    got = (m.mae, m.rmse, m.mape, m.r2)
    assert all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, expected, strict=True)
    ), (got, expected)


def window_of(scored: list[tuple[date, pa.Table]], labels: list[tuple[date, pa.Table]]) -> Window:
    return Window.build(model="m", window_days=30, target="price", scored=scored, labels=labels)


def test_coverage_counts_labelled_rows_and_the_latest_arrival_wins():
    scored = [
        (D1, pa.table({"row_id": ["a", "b", "c", "d"], "prediction": [10.0, 20, 30, 40]})),
        (D2, pa.table({"row_id": ["e"], "prediction": [50.0]})),
    ]
    labels = [
        (date(2026, 3, 2), pa.table({"row_id": ["a", "b"], "price": [11.0, 20]})),
        (date(2026, 3, 4), pa.table({"row_id": ["a"], "price": [12.0]})),
        (date(2026, 3, 4), pa.table({"row_id": ["zzz"], "price": [5.0]})),
    ]
    outcome = window_of(scored, labels).performance(D3)
    first, second = outcome.batches
    assert (first.batch_date, first.n_rows, first.n_labelled) == (D1, 4, 2)
    assert first.label_coverage_ratio == 0.5
    assert first.metrics is not None and first.metrics.mae == pytest.approx((2 + 0) / 2)
    assert (second.n_labelled, second.metrics) == (0, None)
    assert outcome.unmatched_labels == 1
    assert outcome.warnings == (
        "1 label(s) that arrived on 2026-03-04 match no scored row of the batches "
        "2026-02-02..2026-03-03 and were skipped",
    )


def test_a_run_sees_only_the_labels_arrived_by_the_day_after_its_batch():
    scored = [(D1, pa.table({"row_id": ["a", "b"], "prediction": [10.0, 20.0]}))]
    labels = [
        (date(2026, 3, 2), pa.table({"row_id": ["a"], "price": [11.0]})),
        (date(2026, 3, 5), pa.table({"row_id": ["a", "b"], "price": [15.0, 20.0]})),
    ]
    window = window_of(scored, labels)
    nightly = window.performance(D1).batches[0]
    later = window.performance(date(2026, 3, 4)).batches[0]
    assert (nightly.n_labelled, nightly.metrics.mae if nightly.metrics else None) == (1, 1.0)
    assert later.n_labelled == 2 and later.metrics is not None
    assert later.metrics.mae == pytest.approx((5 + 0) / 2)


def test_a_later_null_label_replaces_an_earlier_value_and_ids_may_be_integers():
    scored = [(D1, pa.table({"row_id": pa.array([1, 2], pa.int64()), "prediction": [10.0, 20.0]}))]
    labels = [
        (date(2026, 3, 2), pa.table({"row_id": ["1", "2"], "price": [11.0, 22.0]})),
        (date(2026, 3, 3), pa.table({"row_id": ["1"], "price": pa.array([None], pa.float64())})),
    ]
    outcome = window_of(scored, labels).performance(date(2026, 3, 2))
    (batch,) = outcome.batches
    assert (batch.n_rows, batch.n_labelled, outcome.unmatched_labels) == (2, 1, 0)
    assert batch.metrics is not None and batch.metrics.mae == pytest.approx(2.0)


def test_a_labelled_row_without_a_prediction_is_left_out_of_the_metrics_and_said():
    scored = [(D1, pa.table({"row_id": ["a", "b", "c"], "prediction": [10.0, None, 30.0]}))]
    labels = [(date(2026, 3, 2), pa.table({"row_id": ["a", "b", "c"], "price": [11.0, 99, 33]}))]
    outcome = window_of(scored, labels).performance(D1)
    (batch,) = outcome.batches
    assert (batch.n_labelled, batch.label_coverage_ratio) == (3, 1.0)  # the labels did arrive
    assert batch.metrics is not None
    assert batch.metrics.mae == pytest.approx(metrics.mean_absolute_error([11, 33], [10, 30]))
    assert outcome.warnings == (
        "1 labelled row(s) of the last batches have no prediction (null) and were left out of "
        "the metrics",
    )
    only_null = [(D1, pa.table({"row_id": ["a"], "prediction": pa.array([None], pa.float64())}))]
    (alone,) = window_of(only_null, labels).performance(D1).batches
    assert (alone.n_labelled, alone.metrics) == (1, None)


def test_a_batch_repeating_an_earlier_row_id_fails_its_own_night_and_is_left_out_later():
    scored = [
        (D1, pa.table({"row_id": ["a", "b"], "prediction": [1.0, 2.0]})),
        (D2, pa.table({"row_id": ["b"], "prediction": [3.0]})),
        (D3, pa.table({"row_id": ["c"], "prediction": [4.0]})),
    ]
    window = window_of(scored, [])
    assert window.performance(D1).batches[0].n_rows == 2  # D2 is not in D1's window
    with pytest.raises(InputError, match=r"batch 2026-03-02: row_id 'b' was already scored in "
                       r"batch 2026-03-01 of model 'm'"):  # fmt: skip
        window.performance(D2)
    later = window.performance(D3)
    assert [b.batch_date for b in later.batches] == [D1, D3]
    (said,) = later.warnings
    assert said.startswith("batch 2026-03-02 is left out of the performance window: batch ")


def test_only_the_labels_of_the_night_that_match_nothing_are_unmatched():
    """A label is counted on the night it arrives for, never again: fake ids exactly, and a
    label later than the window's length for a batch too old to be in it."""
    scored = [(D1, pa.table({"row_id": ["a", "b"], "prediction": [1.0, 2.0]}))]
    scored += [(D3, pa.table({"row_id": ["c"], "prediction": [4.0]}))]
    fake = [f"fake-{i}" for i in range(7)]
    labels = [
        (date(2026, 3, 2), pa.table({"row_id": ["a"], "price": [1.0]})),
        (date(2026, 3, 4), pa.table({"row_id": ["b", "c", *fake], "price": [2.0] * 9})),
    ]
    window = Window.build(model="m", window_days=2, target="price", scored=scored, labels=labels)
    assert window.performance(D1).unmatched_labels == 0
    # the night of D3 gets b (a row of D1, before its 2-day window), c and the fake ids
    night = window.performance(D3)
    assert night.unmatched_labels == 1 + len(fake)
    assert window.performance(date(2026, 3, 4)).unmatched_labels == 0


def test_a_bad_label_file_fails_the_night_it_arrives_for_and_is_left_out_later():
    from core.errors import InputError as Bad

    scored = [(D1, pa.table({"row_id": ["a"], "prediction": [1.0]}))]
    error = Bad("labels/arrival_date=2026-03-02/x.parquet lacks column 'price'")
    window = Window.build(model="m", window_days=30, target="price", scored=scored, labels=[],
                          label_errors={date(2026, 3, 2): error})  # fmt: skip
    with pytest.raises(Bad, match=r"x\.parquet lacks column 'price'"):
        window.performance(D1)
    (said,) = window.performance(D2).warnings
    assert said == (
        "labels of 2026-03-02 are left out of the performance window: "
        "labels/arrival_date=2026-03-02/x.parquet lacks column 'price'"
    )

"""ECDFs of float samples (tasks/stats/ecdf.py): sorted or counted, always np.sort's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tasks.stats import ecdf as ecdf_module
from tasks.stats.ecdf import Ecdf, ecdf_of, ecdf_of_sorted

FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -2.0, 5e-324, 1e300, math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-5, 5),
)


def sorted_ecdf(values: np.ndarray) -> tuple[Ecdf, int]:
    """The oracle: np.sort, NaN left out."""
    present = np.sort(values[~np.isnan(values)])
    return ecdf_of_sorted(present), values.size - present.size


def assert_same(got: tuple[Ecdf, int], expected: tuple[Ecdf, int]) -> None:
    (ecdf, missing), (oracle, oracle_missing) = got, expected
    assert missing == oracle_missing
    np.testing.assert_array_equal(ecdf.values, oracle.values)  # -0.0 == 0.0, as np.sort has it
    np.testing.assert_array_equal(ecdf.below_all(), oracle.below_all())
    assert (ecdf.counts_below is None) == (oracle.counts_below is None)


def few_values() -> dict[str, np.ndarray]:
    """Large samples of few distinct values: counted, not sorted."""
    rng = np.random.default_rng(9)
    n = 200_000
    poisson = rng.poisson(4.0, n).astype(np.float64)
    return {
        "heavy ties": poisson,
        "rounded": np.round(rng.normal(60.0, 1.5, n), 1),
        "constant": np.full(n, 3.5),
        "all missing": np.full(n, np.nan),
        "signed zeros, infinities, missing": rng.choice([0.0, -0.0, np.inf, -np.inf, np.nan], n),
        "ties and a few distinct stragglers": np.r_[poisson, rng.normal(size=300)],
        "extremes": rng.choice([-1e308, -1e-300, 0.0, 5e-324, 1e-300, 1e308], n),
    }


@pytest.mark.parametrize("name", list(few_values()))
def test_large_samples_of_few_values_are_counted_exactly(name, monkeypatch):
    values = few_values()[name]

    def no_sort(*args: object) -> None:
        raise AssertionError("counted samples are not sorted")

    monkeypatch.setattr(ecdf_module, "_bucket_sort", no_sort)
    assert_same(ecdf_of(values), sorted_ecdf(values))


def test_large_samples_of_many_values_are_sorted():
    values = np.random.default_rng(3).normal(size=100_000)
    values[::7] = np.round(values[::7], 1)  # ties, but too many distinct values to count
    assert_same(ecdf_of(values), sorted_ecdf(values))


@settings(max_examples=300, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(0, 400), elements=FLOATS))
def test_counting_gives_the_sorted_ecdf_on_any_input(values):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tasks.stats.ecdf._BUCKET_SORT_MIN_N", 0)
        patch.setattr("tasks.stats.ecdf.SAMPLE_SIZE", 16)
        patch.setattr("tasks.stats.ecdf._COUNTED_MAX_DISTINCT", 2.0)  # always counted
        got = ecdf_of(values)
    assert_same(got, sorted_ecdf(values))

"""The drift statistics agree with scipy's definitions (contract section 4), on any input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

from core.settings import DriftRule
from tasks.stats.drift import (
    FeatureDrift,
    chi2_drift,
    decide,
    decide_single,
    ks_drift,
    ks_statistic,
    ks_statistic_of_values,
    kstwo_sf,
    smirnov_sf,
)
from tasks.stats.ecdf import ecdf_of, sort_floats

# few distinct values make heavy ties; NaN is missing; inf must not break anything
ADVERSARIAL = st.sampled_from(
    [0.0, -0.0, 1.0, 1.5, -2.0, 1e-300, 1e300, math.nan, math.inf, -math.inf]
)
FLOATS = st.one_of(
    ADVERSARIAL, st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-5, 5)
)


def samples(max_size: int = 300) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, st.integers(0, max_size), elements=FLOATS)


def present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def assert_p_close(ours: float, scipy_p: float) -> None:
    """The bar of issue 3 for the asymptotic path: 1% down to 1e-6, 10% down to 1e-300."""
    if scipy_p >= 1e-6:
        assert ours == pytest.approx(scipy_p, rel=0.01)
    elif scipy_p >= 1e-300:
        assert ours == pytest.approx(scipy_p, rel=0.1)
    else:
        assert ours <= 1e-299


pytestmark = pytest.mark.filterwarnings(
    # scipy's own ks_2samp, called here as the oracle, warns when it falls back to asymp
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning"
)


# Kolmogorov-Smirnov --------------------------------------------------------------------------
@pytest.mark.slow  # 400 examples
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reference=samples(), current=samples())
def test_ks_statistic_and_small_sample_p_equal_scipy_on_any_input(reference, current):
    ref, cur = present(reference), present(current)
    drift = ks_drift(np.sort(ref), current, feature="x", min_samples=1)
    if min(ref.size, cur.size) == 0:
        assert drift.status == "insufficient_data"
        return
    expected = stats.ks_2samp(ref, cur)
    assert drift.status == "ok"
    assert drift.score == pytest.approx(expected.statistic, abs=1e-12)
    assert drift.p_value == pytest.approx(expected.pvalue, abs=1e-9)
    assert drift.n_reference == ref.size and drift.n_current == cur.size


@settings(max_examples=25, deadline=None)
@given(
    n_ref=st.integers(10_001, 40_000),
    n_cur=st.integers(30, 40_000),
    shift=st.sampled_from([0.0, 0.02, 0.05, 0.1, 0.2, 0.5]),
    decimals=st.sampled_from([None, 1]),
    seed=st.integers(0, 2**32 - 1),
)
def test_ks_p_value_on_large_samples_is_within_the_documented_error_of_scipy(
    n_ref, n_cur, shift, decimals, seed
):
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(size=n_ref), rng.normal(shift, size=n_cur)
    if decimals is not None:  # ties
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    drift = ks_drift(np.sort(ref), cur, feature="x")
    expected = stats.ks_2samp(ref, cur)
    assert drift.score == pytest.approx(expected.statistic, abs=1e-12)
    assert_p_close(drift.p_value, expected.pvalue)


def test_one_value_against_a_million_matches_scipy():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=1_000_000)
    drift = ks_drift(np.sort(ref), np.array([0.25]), feature="x", min_samples=1)
    expected = stats.ks_2samp(ref, [0.25])
    assert drift.score == pytest.approx(expected.statistic, abs=1e-12)
    assert_p_close(drift.p_value, expected.pvalue)


@pytest.mark.parametrize("n", [141, 1_000, 12_345, 60_000])
@pytest.mark.parametrize("n_d_squared", [0.3, 1.5, 2.2, 2.5, 4.0, 10.0, 50.0, 200.0, 369.0])
def test_kstwo_sf_matches_scipy_across_its_branches(n, n_d_squared):
    d = math.sqrt(n_d_squared / n)
    assert_p_close(kstwo_sf(d, n), float(stats.kstwo.sf(d, n)))


@pytest.mark.parametrize(("n", "n_x_squared"), [(250_000, 2.3), (250_000, 40.0), (99_999, 300.0)])
def test_smirnov_sum_matches_scipy_to_1e_8_where_scipy_is_slow(n, n_x_squared):
    x = math.sqrt(n_x_squared / n)
    assert smirnov_sf(n, x) == pytest.approx(special.smirnov(n, x), rel=1e-8)


def test_constant_columns_that_differ_have_d_one():
    drift = ks_drift(np.full(40, 3.0), np.full(50, 4.0), feature="x")
    assert drift.score == 1.0
    assert drift.p_value == pytest.approx(stats.ks_2samp(np.full(40, 3.0), np.full(50, 4.0)).pvalue)


def test_identical_samples_have_d_zero_and_p_one():
    values = np.arange(100.0)
    drift = ks_drift(values, values.copy(), feature="x")
    assert (drift.score, drift.p_value) == (0.0, 1.0)


def test_integer_and_float_samples_give_the_same_d():
    ints = np.array([1, 2, 2, 3, 3, 3] * 10)
    floats = ints.astype(np.float64) + 0.5
    expected = stats.ks_2samp(ints, floats).statistic
    assert ks_drift(np.sort(ints), floats, feature="x").score == pytest.approx(expected, abs=1e-12)


def test_missing_values_are_left_out_and_reported_as_a_ratio():
    current = np.r_[np.arange(90.0), [np.nan] * 10]
    drift = ks_drift(np.arange(100.0), current, feature="x")
    assert drift.n_current == 90
    assert drift.missing_ratio == pytest.approx(0.1)
    assert drift.score == pytest.approx(stats.ks_2samp(np.arange(100.0), np.arange(90.0)).statistic)


def test_too_little_data_is_insufficient_not_drift():
    drift = ks_drift(np.arange(100.0), np.arange(29.0) + 1000, feature="x")
    assert drift.status == "insufficient_data"
    assert math.isnan(drift.score) and math.isnan(drift.p_value)
    assert not decide([drift], DriftRule())[0].is_drifted


def test_all_missing_is_insufficient_data_with_missing_ratio_one():
    drift = ks_drift(np.arange(100.0), np.full(50, np.nan), feature="x")
    assert drift.status == "insufficient_data"
    assert drift.missing_ratio == 1.0


def test_ecdf_counts_values_below_each_distinct_value():
    ecdf, missing = ecdf_of(np.array([2.0, np.nan, 1.0, 2.0, -0.0, 0.0]))
    assert missing == 1
    assert ecdf.values.tolist() == [0.0, 1.0, 2.0]
    assert ecdf.below_all().tolist() == [0, 2, 3, 5]
    assert ecdf.sorted_values().tolist() == [0.0, 0.0, 1.0, 2.0, 2.0]


def large_samples() -> dict[str, np.ndarray]:
    """Batches big enough for `sort_floats` to bucket them, shaped to make buckets fail."""
    rng = np.random.default_rng(5)
    n = 200_000
    normal = rng.normal(size=n)
    return {
        "normal": normal,
        "heavy tails": rng.standard_cauchy(n),
        "far-apart clusters": np.r_[rng.normal(size=n // 2), rng.normal(1e6, size=n // 2)],
        "heavy ties": rng.poisson(4.0, n).astype(np.float64),
        "constant": np.full(n, 3.5),
        "missing, infinite and signed zeros": np.where(
            rng.random(n) < 0.1, rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], n), normal
        ),
        "all missing": np.full(n, np.nan),
        "extremes": rng.choice([-1e308, -1e-300, 0.0, 5e-324, 1e-300, 1e308], n) * rng.random(n),
        "already sorted": np.sort(normal),
        "descending": np.sort(normal)[::-1].copy(),
        "integers": rng.integers(-(2**40), 2**40, n).astype(np.float64),
    }


@pytest.mark.parametrize("name", list(large_samples()))
def test_sort_floats_equals_numpy_sort_on_large_batches(name):
    values = large_samples()[name]
    np.testing.assert_array_equal(sort_floats(values), np.sort(values))


@settings(max_examples=300, deadline=None)
@given(values=samples(400))
def test_sort_floats_buckets_sort_any_input_exactly(values):
    # the bucket path, on small adversarial inputs (it normally starts at 65,536 values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tasks.stats.ecdf._BUCKET_SORT_MIN_N", 0)
        patch.setattr("tasks.stats.ecdf.SAMPLE_SIZE", 16)
        ordered = sort_floats(values)
    np.testing.assert_array_equal(ordered, np.sort(values))


@settings(max_examples=200, deadline=None)
@given(reference=samples(60), current=samples(60))
def test_ks_statistic_is_symmetric(reference, current):
    ref, _ = ecdf_of(reference)
    cur, _ = ecdf_of(current)
    assume(ref.n and cur.n)
    assert ks_statistic(ref, cur) == pytest.approx(ks_statistic(cur, ref), abs=1e-15)


# chi-square and total variation distance -----------------------------------------------------
COUNTS = st.dictionaries(st.sampled_from(list("abcdefgh")), st.integers(0, 500), max_size=8)


@settings(max_examples=300, deadline=None)
@given(reference=COUNTS, current=COUNTS)
def test_chi2_equals_scipy_on_the_union_of_categories_and_scores_tvd(reference, current):
    drift = chi2_drift(reference, current, feature="c", min_samples=1)
    seen = sorted({k for k, v in reference.items() if v} | {k for k, v in current.items() if v})
    table = np.array([[d.get(k, 0) for k in seen] for d in (reference, current)])
    if table.size == 0 or min(table.sum(axis=1)) == 0:
        assert drift.status == "insufficient_data"
        return
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    assert drift.score == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-12)
    assert drift.p_value == pytest.approx(stats.chi2_contingency(table).pvalue, abs=1e-9)
    assert 0.0 <= drift.score <= 1.0


def test_unseen_category_raises_total_variation_distance():
    before = chi2_drift({"a": 50, "b": 50}, {"a": 50, "b": 50}, feature="c")
    after = chi2_drift({"a": 50, "b": 50}, {"a": 50, "b": 30, "new": 20}, feature="c")
    assert before.score == 0.0
    assert after.score == pytest.approx(0.2)
    assert after.p_value < before.p_value


def test_every_category_unseen_is_total_variation_distance_one():
    drift = chi2_drift({"a": 60, "b": 40}, {"x": 70, "y": 30}, feature="c")
    assert drift.score == 1.0
    assert drift.p_value < 1e-40


def test_vanished_category_counts_in_the_table():
    drift = chi2_drift({"a": 50, "b": 50, "gone": 100}, {"a": 100, "b": 100}, feature="c")
    assert drift.score == pytest.approx(0.5)
    expected = stats.chi2_contingency([[50, 50, 100], [100, 100, 0]]).pvalue
    assert drift.p_value == pytest.approx(expected)


def test_one_category_in_both_samples_is_no_drift():
    drift = chi2_drift({"a": 40}, {"a": 80}, feature="c")
    assert (drift.score, drift.p_value, drift.status) == (0.0, 1.0, "ok")


# the rule ------------------------------------------------------------------------------------
def drift_of(p: float, score: float, status: str = "ok") -> FeatureDrift:
    return FeatureDrift("f", "ks", score, p, 100, 100, 0.0, status)  # type: ignore[arg-type]


def test_drift_needs_both_an_adjusted_p_below_alpha_and_a_large_enough_score():
    rule = DriftRule(alpha=0.05, min_score=0.1)
    decided = decide([drift_of(1e-9, 0.3), drift_of(1e-9, 0.05), drift_of(0.2, 0.3)], rule)
    assert [d.is_drifted for d in decided] == [True, False, False]


def test_p_values_are_adjusted_by_benjamini_hochberg():
    decided = decide([drift_of(0.01, 0.3), drift_of(0.04, 0.3), drift_of(0.9, 0.3)], DriftRule())
    # ranked 1, 2, 3 of 3: 0.01 * 3 / 1, 0.04 * 3 / 2, 0.9
    assert [d.p_value_adjusted for d in decided] == pytest.approx([0.03, 0.06, 0.9])
    assert [d.is_drifted for d in decided] == [True, False, False]


def test_adjustment_skips_untested_features():
    decided = decide(
        [drift_of(0.01, 0.3), drift_of(math.nan, math.nan, "insufficient_data")], DriftRule()
    )
    assert decided[0].p_value_adjusted == pytest.approx(0.01)
    assert math.isnan(decided[1].p_value_adjusted) and not decided[1].is_drifted


def test_a_single_test_is_its_own_adjustment():
    assert decide_single(drift_of(0.01, 0.3), DriftRule()).p_value_adjusted == pytest.approx(0.01)


def test_ks_statistic_is_exact_across_blocks_of_a_large_batch():
    rng = np.random.default_rng(11)
    # ties that straddle the 32,768-value blocks, and reference values between and beyond them
    ref = np.round(rng.normal(size=50_000), 2)
    cur = np.r_[np.round(rng.normal(0.05, size=150_000), 2), np.arange(40_000) / 1e4]
    d = ks_statistic(ecdf_of(ref)[0], ecdf_of(cur)[0])
    assert d == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    d = ks_statistic(ecdf_of(cur)[0], ecdf_of(ref)[0])
    assert d == pytest.approx(stats.ks_2samp(cur, ref).statistic, abs=1e-12)


@pytest.mark.slow  # 400 examples
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reference=samples(), current=samples(), chunk=st.integers(1, 40), block=st.integers(1, 9))
def test_ks_statistic_counted_by_chunks_equals_scipy_on_any_input(reference, current, chunk, block):
    ref, cur = present(reference), present(current)
    assume(ref.size and cur.size)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tasks.stats.drift._KS_CHUNK", chunk)
        patch.setattr("tasks.stats.drift._KS_BLOCK", block)
        d = ks_statistic_of_values(ecdf_of(reference)[0], current)
    assert d == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)


@pytest.mark.parametrize("name", ["normal", "heavy ties", "missing, infinite and signed zeros"])
def test_ks_drift_of_a_batch_larger_than_a_chunk_equals_scipy(name):
    current = large_samples()[name]
    reference = np.round(np.random.default_rng(7).normal(size=60_000), 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tasks.stats.drift._KS_CHUNK", 30_000)  # seven chunks, the last one short
        drift = ks_drift(np.sort(reference), current, feature="x")
    expected = stats.ks_2samp(reference, present(current))
    assert drift.score == pytest.approx(expected.statistic, abs=1e-12)
    assert_p_close(drift.p_value, expected.pvalue)
    assert drift.missing_ratio == np.isnan(current).mean()


@pytest.mark.parametrize("name", ["normal", "heavy tails", "far-apart clusters", "heavy ties"])
def test_ks_statistic_of_bucket_sorted_batches_equals_scipy(name):
    current = large_samples()[name]
    reference = np.random.default_rng(6).normal(size=120_000)
    drift = ks_drift(np.sort(reference), current, feature="x")
    assert drift.score == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1e-12)

"""Large columns in buckets (tasks/stats/buckets.py): every number the drift step reports of a
bucketed column equals the one of the same column sorted whole, and scipy's D."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from core.settings import DriftRule
from tasks.quality.batch import repeated_rows
from tasks.quality.facts import NumericFacts
from tasks.stats import batch_drift, buckets, ecdf_gap
from tasks.stats.batch_drift import in_buckets, measured
from tasks.stats.buckets import BUCKETS, NAN_BUCKET, Bucketed, Bucketing, bucketing_of
from tasks.stats.columns import repeated_values
from tasks.stats.ecdf import Ecdf, ecdf_of, sample_of
from tasks.stats.ecdf_gap import BucketGap
from tasks.stats.profile import NumericProfile, numeric_profile
from tasks.stats.sketches import NumericSketch

FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.0, 5e-324, 1e300, -1e300, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-5, 5),
)
RULE = DriftRule(min_samples=1)
# small arrays of any floats, and buckets placed anywhere over any spread
SMALL = hnp.arrays(np.float64, st.integers(1, 300), elements=FLOATS)
LOWS = st.floats(-1e6, 1e6)
SPREADS = st.floats(1e-9, 1e9)


def both_ways(
    reference: np.ndarray,
    current: np.ndarray,
    value_range: tuple[float, float] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[tuple, tuple]:
    """`measured` of one column bucketed and sorted whole (the bucketed one asserted taken)."""
    profile = numeric_profile(pa.array(reference))
    column = pa.chunked_array([pa.array(current)])
    assert in_buckets(profile.ecdf, current, value_range) is not None, "not bucketed"
    bucketed = measured("x", profile, column, RULE, value_range)
    monkeypatch.setattr(batch_drift, "in_buckets", lambda *args: None)
    whole = measured("x", profile, column, RULE, value_range)
    monkeypatch.undo()
    return bucketed, whole


def assert_same_report(bucketed: tuple, whole: tuple) -> None:
    (drift_b, sketch_b, facts_b), (drift_w, sketch_w, facts_w) = bucketed, whole
    assert drift_b == drift_w
    assert isinstance(sketch_b, NumericSketch) and isinstance(sketch_w, NumericSketch)
    for field in ("reference_x", "reference_f", "current_x", "current_f"):
        np.testing.assert_array_equal(getattr(sketch_b, field), getattr(sketch_w, field))
    assert (sketch_b.n_reference, sketch_b.n_current) == (sketch_w.n_reference, sketch_w.n_current)
    for field in ("gap_x", "gap_reference", "gap_current"):
        assert getattr(sketch_b, field) == pytest.approx(getattr(sketch_w, field), nan_ok=True)
    assert (facts_b.n_present, facts_b.n_missing, facts_b.n_outside) == (
        facts_w.n_present,
        facts_w.n_missing,
        facts_w.n_outside,
    )
    np.testing.assert_array_equal(facts_b.shape, facts_w.shape)
    assert (facts_b.n_distinct == 1) == (facts_w.n_distinct == 1)
    assert facts_b.tied is None  # found by the row check when needed


def large() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(41)
    n = 120_000
    normal = rng.normal(size=n)
    with_nan = rng.normal(size=n)
    with_nan[rng.random(n) < 0.03] = np.nan
    return {
        "same distribution": (normal, rng.normal(size=n)),
        "shifted a little": (normal, rng.normal(0.01, 1.0, n)),
        "shifted far": (normal, rng.normal(3.0, 1.0, n)),
        "current all above": (normal, rng.normal(100.0, 1.0, n)),
        "missing values": (normal, with_nan),
        "rounded current (many ties)": (normal, np.round(rng.normal(size=n), 2)),
        "rounded reference": (np.round(normal, 1), rng.normal(size=n)),
        "heavy tails": (rng.standard_cauchy(n), rng.standard_cauchy(n)),
        "a spike among continuous values": (
            normal,
            np.where(rng.random(n) < 0.2, 0.0, rng.normal(size=n)),
        ),
        "infinities and signed zeros": (
            np.r_[normal, [np.inf] * 40, [-0.0] * 30],
            np.r_[rng.normal(size=n), [np.inf] * 7, [-np.inf] * 3, [0.0] * 50, [-0.0] * 50],
        ),
        "tiny reference": (rng.normal(size=40), rng.normal(size=n)),
        "huge and tiny magnitudes": (
            np.r_[rng.normal(0, 1e-300, 3000), rng.normal(0, 1e300, 3000)],
            np.r_[rng.normal(0, 1e-300, n // 2), rng.normal(0, 1e300, n // 2)],
        ),
    }


@pytest.mark.parametrize("name", list(large()))
def test_bucketed_column_reports_what_the_sorted_column_does(name, monkeypatch):
    reference, current = large()[name]
    bucketed, whole = both_ways(reference, current, (-1.5, 2.0), monkeypatch)
    assert_same_report(bucketed, whole)
    present = current[~np.isnan(current)]
    expected = stats.ks_2samp(reference, present)
    assert bucketed[0].score == pytest.approx(expected.statistic, abs=1e-12)


@pytest.mark.parametrize("shape", ["a crowded bucket", "two far clusters"])
def test_crowded_columns_fall_back_to_the_sort(shape):
    rng = np.random.default_rng(5)
    n = 600_000
    # half the values crowd a bucket or two while differing: resolving would sort half the batch
    crowded = {
        "a crowded bucket": np.r_[rng.normal(size=n // 2), 1.0 + rng.random(n // 2) * 1e-12],
        "two far clusters": np.r_[rng.normal(0, 1e-9, n // 2), rng.normal(1e6, 1, n // 2)],
    }[shape]
    profile = numeric_profile(pa.array(rng.normal(size=n)))
    assert in_buckets(profile.ecdf, crowded) is None
    # and such a column still gets the exact test, sorted
    drift, _, facts = measured("x", profile, pa.chunked_array([crowded]), RULE, None)
    assert drift.score == pytest.approx(
        stats.ks_2samp(profile.values_sorted, crowded).statistic, abs=1e-12
    )
    assert isinstance(facts, NumericFacts) and facts.tied is not None


def test_small_and_few_valued_columns_are_not_bucketed():
    rng = np.random.default_rng(6)
    reference = numeric_profile(pa.array(rng.normal(size=1000))).ecdf
    assert in_buckets(reference, rng.normal(size=1000)) is None
    assert in_buckets(reference, rng.poisson(3.0, 200_000).astype(float)) is None
    assert in_buckets(reference, rng.normal(size=200_000)) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reference=hnp.arrays(np.float64, st.integers(1, 200), elements=FLOATS),
    current=hnp.arrays(np.float64, st.integers(2, 400), elements=FLOATS),
    low=st.one_of(st.none(), FLOATS.filter(lambda v: not math.isnan(v))),
)
def test_bucketed_equals_sorted_on_any_input(reference, current, low):
    """Small samples bucketed on purpose: ties, infinities, signed zeros, NaN, extremes."""
    reference = reference[~np.isnan(reference)]
    assume(reference.size and np.count_nonzero(~np.isnan(current)) >= 2)
    value_range = None if low is None else (low, low + 1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_drift, "BUCKETED_MIN_N", 2)
        patch.setattr(batch_drift, "few_distinct", lambda sample: False)
        # exact p-values need the sorted sample, which large (bucketed) samples never use
        patch.setattr("tasks.stats.drift.KS_EXACT_MAX_N", 0)
        profile = numeric_profile(pa.array(reference))
        assume(in_buckets(profile.ecdf, current, value_range) is not None)
        assert_same_report(*both_ways(reference, current, value_range, patch))


def test_questions_outside_the_resolved_buckets_are_refused():
    rng = np.random.default_rng(8)
    values = rng.normal(size=100_000)
    bucketing = bucketing_of(sample_of(values))
    assert bucketing is not None
    bucketed = Bucketed(values, bucketing)
    median = bucketed.buckets_of_positions(np.array([50_000]))
    resolved = bucketed.resolve(median)
    assert resolved is not None
    assert resolved.order_statistics(np.array([50_000]))[0] == np.sort(values)[50_000]
    with pytest.raises(AssertionError, match="not resolved"):
        resolved.order_statistics(np.array([10]))


def test_repeated_rows_are_found_in_columns_the_drift_step_did_not_sort():
    rng = np.random.default_rng(12)
    n = 100_000
    table = pa.table(
        {
            "a": rng.normal(size=n),
            "b": np.round(rng.normal(size=n), 1),
            "c": rng.integers(0, 3, n),
        }
    )
    repeats = rng.choice(n, 700, replace=False)
    copied = table.take(pa.array(repeats))
    near = copied.set_column(0, "a", pa.array(copied.column("a").to_numpy() + 1e-9))
    table = pa.concat_tables([table, copied, near])  # 700 repeats; 700 rows alike but for a
    expected = table.num_rows - table.group_by(table.column_names).aggregate([]).num_rows
    assert expected == 700
    # rounding made zeros of both signs in b: a tie at either keeps every zero in question
    b = table.column("b").to_numpy()
    assert np.signbit(b[b == 0]).any() and not np.signbit(b[b == 0]).all()
    b_tied = ecdf_of(table.column("b").to_numpy())[0]
    ties_b = b_tied.values[np.diff(b_tied.below_all()) > 1]
    assert repeated_rows(table, {"a": None, "b": ties_b}, repeated_values) == 700
    assert repeated_rows(table, {"a": None, "b": None}, repeated_values) == 700
    # without a way to find them, an unsorted column narrows nothing: still exact
    assert repeated_rows(table, {"a": None, "b": None}) == 700


def test_a_million_row_column_is_bucketed_exactly():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=1_000_000)
    current = rng.normal(0.003, 1.0, 1_000_000)
    profile = numeric_profile(pa.array(reference))
    assert isinstance(profile, NumericProfile)
    found = in_buckets(profile.ecdf, current)
    assert found is not None
    gap = found[2]
    assert gap is not None
    assert gap.statistic == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    values=SMALL,
    low=LOWS,
    spread=SPREADS,
    buckets=st.lists(st.integers(-3, BUCKETS + 3), min_size=1, max_size=50),
)
def test_starts_of_counts_what_keying_every_value_counts(values, low, spread, buckets):
    """The search for a bucket's start agrees with the bucket numbers themselves."""
    ascending = np.sort(values[~np.isnan(values)])
    assume(ascending.size)
    bucketing = Bucketing(low, (BUCKETS - 3) / spread)
    asked = np.array(buckets)
    expected = np.searchsorted(bucketing.keys(ascending), np.clip(asked, 0, BUCKETS))
    np.testing.assert_array_equal(bucketing.starts_of(ascending, asked), expected)


def test_starts_of_settles_values_a_rounding_away_from_a_buckets_edge(monkeypatch):
    """Values within a few ulps of the buckets' computed edges: the search lands a value off
    for some, and the search on bucket numbers settles them."""
    rng = np.random.default_rng(14)
    bucketing = Bucketing(-0.37, (BUCKETS - 3) / 2.9)
    edges = bucketing.low + (np.arange(1, BUCKETS) - 1) / bucketing.scale
    near = [np.nextafter(edges, direction) for direction in (-np.inf, np.inf)]
    ascending = np.sort(np.concatenate([edges, *near, rng.normal(size=10_000)]))
    settled = []
    search = Bucketing._first_at_or_after
    monkeypatch.setattr(
        Bucketing,
        "_first_at_or_after",
        lambda self, a, b: settled.append(b.size) or search(self, a, b),
    )
    asked = np.arange(BUCKETS + 1)
    expected = np.searchsorted(bucketing.keys(ascending), asked)
    np.testing.assert_array_equal(bucketing.starts_of(ascending, asked), expected)
    assert settled and settled[0] > 0, "no edge needed settling: the test lost its point"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.sampled_from([0.0, 1e-3, 0.05, 0.5, 3.0]),
    rounding=st.sampled_from([None, 1, 2]),
    n=st.integers(70_000, 120_000),
)
def test_the_coarse_to_fine_search_opens_the_buckets_a_search_of_every_bucket_does(
    seed, shift, rounding, n
):
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=n)
    current = rng.normal(shift, 1.0, n)
    if rounding is not None:
        reference, current = np.round(reference, rounding + 1), np.round(current, rounding + 1)
    ecdf = numeric_profile(pa.array(reference)).ecdf
    bucketing = bucketing_of(sample_of(current))
    assert bucketing is not None
    bucketed = Bucketed(current, bucketing)
    coarse_to_fine = BucketGap(ecdf, bucketed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ecdf_gap, "_COARSEST", 1)  # every bucket at once
        every_bucket = BucketGap(ecdf, bucketed)
    np.testing.assert_array_equal(coarse_to_fine.needed, every_bucket.needed)
    resolved = bucketed.resolve(coarse_to_fine.needed)
    if resolved is not None:
        gap = coarse_to_fine.gap(resolved)
        assert gap == every_bucket.gap(resolved)
        expected = stats.ks_2samp(reference, current).statistic
        assert gap.statistic == pytest.approx(expected, abs=1e-12)


def buckets_tried(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per bucketing the drift step tries from now on: whether it was the reference's own."""
    tried: list[bool] = []

    def spy(ref: Ecdf, cur: Bucketed, starts: np.ndarray | None = None) -> BucketGap:
        tried.append(starts is not None)
        return BucketGap(ref, cur, starts)

    monkeypatch.setattr(batch_drift, "BucketGap", spy)
    return tried


@pytest.mark.parametrize(
    "name, on_the_references",
    [
        ("same distribution", True),
        ("shifted a little", True),
        ("missing values", True),
        ("heavy tails", True),
        ("shifted far", False),
        ("current all above", False),
    ],
)
def test_a_batch_spread_like_the_reference_is_bucketed_on_the_references_own_buckets(
    name, on_the_references, monkeypatch
):
    """The reference's stored buckets serve a batch spread like it, the batch's own serve one
    that is not, and either way the report is the one of the batch's own buckets."""
    reference, current = large()[name]
    profile = numeric_profile(pa.array(reference))
    assert profile.buckets is not None
    column = pa.chunked_array([pa.array(current)])
    bare = replace(profile, buckets=None)
    used = buckets_tried(monkeypatch)
    theirs = measured("x", profile, column, RULE, (-1.5, 2.0))
    assert used == ([True] if on_the_references else [False])
    assert_same_report(theirs, measured("x", bare, column, RULE, (-1.5, 2.0)))
    assert used[-1] is False


def test_a_batch_crowding_buckets_its_sample_did_not_show_is_sorted_after_both_tries(
    monkeypatch,
):
    """Half a batch in one bucket, between the values its sample drew: the reference's buckets
    are tried, then the batch's own, and the sort serves, exactly."""
    rng = np.random.default_rng(21)
    reference = rng.normal(size=200_000)
    profile = numeric_profile(pa.array(reference))
    assert profile.buckets is not None
    current = rng.normal(size=200_000)
    current[1::2] = 0.25 + rng.random(100_000) * 1e-9  # the sample takes every 12th value
    tried = buckets_tried(monkeypatch)
    assert in_buckets(profile.ecdf, current, None, profile.buckets) is None
    assert tried == [True, False]
    drift = measured("x", profile, pa.chunked_array([current]), RULE, None)[0]
    assert drift.score == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(values=SMALL, low=LOWS, spread=SPREADS)
def test_nan_and_only_nan_lands_in_the_nan_bucket(values, low, spread):
    """A batch's missing values are counted in the pass that buckets it, apart from every
    value, infinities and the extremes included."""
    bucketing = Bucketing(low, (BUCKETS - 4) / spread)
    keys = bucketing.keys(values)
    np.testing.assert_array_equal(keys == NAN_BUCKET, np.isnan(values))
    bucketed = Bucketed(values, bucketing)
    assert bucketed.missing == np.count_nonzero(np.isnan(values))
    assert bucketed.n == values.size - bucketed.missing
    resolved = bucketed.resolve(np.arange(NAN_BUCKET))
    if resolved is not None:
        present = np.sort(values[~np.isnan(values)])
        np.testing.assert_array_equal(resolved.order_statistics(np.arange(present.size)), present)


@settings(max_examples=300, deadline=None)
@given(values=SMALL, low=LOWS, spread=SPREADS)
def test_the_fullest_bucket_of_a_sample_is_the_largest_count_of_its_histogram(values, low, spread):
    """`ReferenceBuckets.spreads` compares the fullest buckets of a batch's sample (ascending,
    without NaN); it counts the longest run of one bucket instead of a histogram."""
    sample = np.sort(values[~np.isnan(values)])
    assume(sample.size)
    bucketing = Bucketing(low, (BUCKETS - 4) / spread)
    histogram = np.bincount(bucketing.keys(sample), minlength=BUCKETS)
    assert buckets._fullest(bucketing, sample) == histogram.max()

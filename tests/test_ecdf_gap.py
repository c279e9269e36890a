"""Where two ECDFs are furthest apart (tasks/stats/ecdf_gap.py): scipy's D, and a point with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from tasks.stats.ecdf import ecdf_of
from tasks.stats.ecdf_gap import ecdf_gap

# few distinct values make heavy ties; NaN is missing; inf and signed zeros must not break it
ADVERSARIAL = st.sampled_from(
    [0.0, -0.0, 1.0, 1.5, -2.0, 1e-300, 5e-324, 1e300, math.nan, math.inf, -math.inf]
)
FLOATS = st.one_of(
    ADVERSARIAL, st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-5, 5)
)


pytestmark = pytest.mark.filterwarnings(
    # scipy's own ks_2samp, called here as the oracle, warns when it falls back to asymp
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning"
)


def samples(max_size: int = 300) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, st.integers(1, max_size), elements=FLOATS)


def assert_gap_is_scipys(reference: np.ndarray, current: np.ndarray) -> None:
    """D equal to ks_2samp's to 1e-12, at a point of either sample whose ECDFs differ by it."""
    ref, cur = reference[~np.isnan(reference)], current[~np.isnan(current)]
    gap = ecdf_gap(ecdf_of(reference)[0], ecdf_of(current)[0])
    assert gap.statistic == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert gap.x in set(ref) | set(cur)
    assert gap.reference_at == np.count_nonzero(ref <= gap.x)
    assert gap.current_at == np.count_nonzero(cur <= gap.x)
    assert abs(gap.reference_at / ref.size - gap.current_at / cur.size) == pytest.approx(
        gap.statistic, abs=1e-12
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reference=samples(), current=samples(), stretch=st.integers(1, 40))
def test_gap_equals_scipy_on_any_input_and_any_stretch(reference, current, stretch):
    assume(np.any(~np.isnan(reference)) and np.any(~np.isnan(current)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tasks.stats.ecdf_gap._STRETCH", stretch)
        assert_gap_is_scipys(reference, current)


def adversarial() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(23)
    normal = rng.normal(size=200_000)
    return {
        "shifted normals": (normal, rng.normal(0.1, 1.0, 150_000)),
        "identical": (normal, normal.copy()),
        "one value each, equal": (np.array([2.0]), np.array([2.0])),
        "one value against many": (np.array([0.3]), normal),
        "constants that differ": (np.full(1000, 1.0), np.full(700, 2.0)),
        "current all below": (normal, normal - 100.0),
        "current all above": (normal, normal + 100.0),
        "current inside one stretch": (normal, rng.uniform(0.0, 1e-4, 50_000)),
        "heavy ties both": (
            rng.poisson(4.0, 100_000).astype(float),
            rng.poisson(4.2, 80_000).astype(float),
        ),
        "tied reference, continuous current": (
            np.round(normal, 1),
            rng.normal(0.02, 1.0, 90_000),
        ),
        "continuous reference, tied current": (normal, np.round(rng.normal(size=90_000), 2)),
        "infinities and signed zeros": (
            np.r_[normal, [np.inf] * 50, [-np.inf] * 10, [0.0] * 30],
            np.r_[rng.normal(size=5000), [np.inf] * 5, [-0.0] * 40, [np.nan] * 9],
        ),
        "tiny and huge magnitudes": (
            np.r_[rng.normal(0, 1e-300, 3000), rng.normal(0, 1e300, 3000)],
            np.r_[rng.normal(0, 1e-300, 2000), rng.normal(0, 1e300, 5000), [5e-324] * 3],
        ),
    }


@pytest.mark.parametrize("name", list(adversarial()))
def test_gap_equals_scipy_on_adversarial_samples(name):
    reference, current = adversarial()[name]
    assert_gap_is_scipys(reference, current)
    assert_gap_is_scipys(current, reference)


def test_equal_samples_are_shown_where_both_ecdfs_reach_one():
    gap = ecdf_gap(ecdf_of(np.array([1.0, 2.0, 2.0]))[0], ecdf_of(np.array([2.0, 1.0, 2.0]))[0])
    assert (gap.statistic, gap.x, gap.reference_at, gap.current_at) == (0.0, 2.0, 3, 3)

"""Drift statistics as plain functions over arrays (docs/contract.md, "Statistics").

Numeric features and the prediction: two-sample Kolmogorov-Smirnov with scipy `ks_2samp`
semantics. Categorical features: chi-square test of homogeneity (`chi2_contingency` defaults) on
the 2 x k table over the categories seen in either sample, scored by total variation distance.
Missing values are left out and reported as a ratio. Which features drift is decided over all of
them at once: Benjamini-Hochberg adjusted p below `alpha`, score at least `min_score` and, where
the reference's days taught one, above a normal day's score (tasks/stats/normal.py).
docs/statistics.md says what is computed where, and how it was checked against scipy.

scipy is imported where a test needs it, not with this module: importing `scipy.stats` is slow, and
a run that stops at an unknown model or a bad batch never pays for it (docs/measurements.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from core.settings import DriftRule
from tasks.stats.ecdf import Ecdf, Sample, ecdf_of, ecdf_of_sorted, sort_floats
from tasks.stats.ecdf_gap import EcdfGap, ecdf_gap

TestName = Literal["ks", "chi2"]
Status = Literal["ok", "insufficient_data"]

# scipy's ks_2samp computes the exact distribution up to this many values per sample (method="auto")
KS_EXACT_MAX_N = 10_000
# the region of kstwo.sf where scipy sums the one-sided Smirnov series term by term (O(n))
_SMIRNOV_MIN_N, _SMIRNOV_MIN_NXX, _SMIRNOV_MAX_NXX = 140, 2.2, 370.0
# terms of the Smirnov series below exp(-_SPAN) times the largest add less than 1e-15 in all
_SPAN = 45.0
_COARSE_NODES, _EXACT_TERMS, _FINE_NODES = 512, 20_000, 8_192
# current values per step of the KS statistic: its temporaries stay within the CPU's L2 cache
_KS_BLOCK = 32_768
# raw current values sorted and counted at a time by `ks_statistic_of_values`
_KS_CHUNK = 2**20


def _scipy_stats() -> Any:
    from scipy import stats

    return stats


def _scipy_special() -> Any:
    from scipy import special

    return special


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: TestName
    score: float
    p_value: float
    n_reference: int
    n_current: int
    missing_ratio: float
    status: Status = "ok"
    p_value_adjusted: float = math.nan
    is_drifted: bool = False
    muted: bool = False  # by the model's policy: tested and shown, never alerted
    # the largest score of a normal day this size (tasks/stats/normal.py); NaN: none learned
    normal_upper: float = math.nan


def _missing_ratio(n_missing: int, n_total: int) -> float:
    return n_missing / n_total if n_total else 0.0


def _excess(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, *, exact: bool) -> float:
    """The largest a / n_a - b / n_b over the pairs of counts; with `exact`, in integers scaled
    by n_a * n_b (a * n_b - b * n_a), as D is divided once at the end."""
    if exact:
        return int(np.max(a * n_b - b * n_a))
    return float(np.max(a / n_a - b / n_b))


def ks_statistic(reference: Ecdf, current: Ecdf) -> float:
    """D of scipy's `ks_2samp` (tasks/stats/ecdf_gap.py finds it, and where)."""
    return ecdf_gap(reference, current).statistic


def ks_statistic_of_values(reference: Ecdf, values: np.ndarray) -> float:
    """D of scipy's `ks_2samp` against raw current values (NaN = missing), chunk by chunk.

    Both ECDFs are step functions, and the reference one is flat between two distinct
    reference values r[k] and r[k + 1], so the largest difference on that stretch is where the
    current ECDF is lowest (at r[k]) or highest (just before r[k + 1]). What D needs of the
    current sample is thus only how many of its values lie at or below each r[k] and how many
    equal it. Those counts add up over chunks: each chunk of `_KS_CHUNK` values is sorted
    (which makes searching it in the reference cheap) and counted, so time grows linearly with
    the batch and memory stays at one chunk's worth beyond the values themselves.
    """
    m = reference.values.size
    in_step = np.zeros(m + 1, dtype=np.int64)  # per k: current values in (r[k - 1], r[k]]
    equal = np.zeros(m, dtype=np.int64)  # per k: current values == r[k]
    for start in range(0, values.size, _KS_CHUNK):
        ordered = sort_floats(values[start : start + _KS_CHUNK])
        ordered = ordered[: np.searchsorted(ordered, np.nan, side="left")]
        _count_steps(reference.values, ordered, in_step, equal)
    return _ks_from_counts(reference, in_step, equal)


def _count_steps(
    reference_values: np.ndarray, ordered: np.ndarray, in_step: np.ndarray, equal: np.ndarray
) -> None:
    """Add ascending, NaN-free current values to the counts of `ks_statistic_of_values`.

    Block by block: each block searches only the part of the reference its values can fall
    in, and its temporaries stay within the CPU's cache.
    """
    low = 0
    for start in range(0, ordered.size, _KS_BLOCK):
        block = ordered[start : start + _KS_BLOCK]
        high = int(np.searchsorted(reference_values, block[-1], side="right"))
        window = reference_values[low:high]  # every value of the block lies in or just above it
        k = np.searchsorted(window, block, side="left")  # counted from `low`
        steps = np.bincount(k)
        in_step[low : low + steps.size] += steps
        if window.size:
            # a value with k = window.size exceeds window[-1]: clipping finds no false tie
            ties = window[np.minimum(k, window.size - 1)] == block
            if ties.any():
                tied = np.bincount(k[ties])
                equal[low : low + tied.size] += tied
        low += int(k[-1])  # later values are not smaller


def _ks_from_counts(reference: Ecdf, in_step: np.ndarray, equal: np.ndarray) -> float:
    """D from the current counts per reference step, in cache-sized blocks of steps."""
    m, n1, n2 = reference.values.size, reference.n, int(in_step.sum())
    exact = n1 * n2 < 2**62  # int64 cross products; beyond, floats as scipy computes them
    up = down = 0.0
    carry = 0
    for start in range(0, m, _KS_BLOCK):
        stop = min(start + _KS_BLOCK, m)
        cur_at = np.cumsum(in_step[start:stop])  # current values <= r[k]
        cur_at += carry
        carry = int(cur_at[-1])
        cur_below = cur_at - equal[start:stop]  # current values < r[k]
        ref_below = reference.below(np.arange(start, stop))  # reference values < r[k]
        ref_at = reference.below(np.arange(start + 1, stop + 1))  # reference values <= r[k]
        up = max(up, _excess(cur_below, n2, ref_below, n1, exact=exact))
        down = max(down, _excess(ref_at, n1, cur_at, n2, exact=exact))
    # the values above the last reference value: there the reference ECDF is 1, so no larger
    return max(up, down) / (n1 * n2) if exact else max(up, down)


def smirnov_sf(n: float, x: float) -> float:
    """P(D+_n >= x), the one-sided Smirnov tail, summed as `scipy.special.smirnov` sums it.

    The Birnbaum-Tingey series has up to n(1 - x) positive terms; scipy adds all of them
    (docs/statistics.md compares the two). Its terms rise and fall smoothly, so this adds only
    those within exp(-45) of the largest: one by one when they are at most 20,000, else by the
    trapezoid rule on the series' smooth continuation (8,192 nodes), which sums such a
    bell-shaped run of terms to about 1e-9 relative (checked against scipy up to n = 10^6 in
    tests and docs).
    """
    jmax = math.floor(n * (1.0 - x))
    if 1.0 - x - jmax / n <= 0:
        jmax -= 1
    if jmax < 0:
        return 0.0

    def log_terms(j: np.ndarray) -> np.ndarray:
        q = x + j / n
        # q may round to 1 at the last term, whose log is then -inf and its term 0: as it should
        with np.errstate(divide="ignore"):
            return (
                math.log(x)
                - math.log(n + 1)
                - _scipy_special().betaln(n - j + 1, j + 1)  # log C(n, j), accurate for large n
                + (n - j) * np.log1p(-q)
                + (j - 1) * np.log(q)
            )

    coarse = np.linspace(0.0, jmax, min(_COARSE_NODES, jmax + 1))
    lt = log_terms(coarse)
    inside = np.flatnonzero(lt > lt.max() - _SPAN)
    step = coarse[1] - coarse[0] if coarse.size > 1 else 1.0
    lo = max(0.0, coarse[inside[0]] - step)
    hi = min(float(jmax), coarse[inside[-1]] + step)
    if hi - lo <= _EXACT_TERMS:
        j = np.arange(math.floor(lo), math.ceil(hi) + 1, dtype=np.float64)
        terms = log_terms(j)
        weights = np.ones_like(terms)
        width = 1.0
    else:
        j = np.linspace(lo, hi, _FINE_NODES)
        terms = log_terms(j)
        weights = np.ones_like(terms)
        weights[[0, -1]] = 0.5
        width = j[1] - j[0]
    top = terms.max()
    return float(math.exp(top) * np.dot(weights, np.exp(terms - top)) * width)


def kstwo_sf(d: float, n: float) -> float:
    """`scipy.stats.kstwo.sf(d, n)`, with its slow one-sided Smirnov branch summed fast."""
    t = n * d
    if n > _SMIRNOV_MIN_N and 0 < d < 0.5 and 1.0 < t < n - 1:
        nxx = t * d
        if nxx >= _SMIRNOV_MAX_NXX:
            return 0.0  # scipy's cut-off: p < 1e-320
        if nxx >= _SMIRNOV_MIN_NXX:
            return min(1.0, max(0.0, 2.0 * smirnov_sf(n, d)))
    # every other branch of scipy's kolmogn is closed-form or small, so it is fast as it is
    return float(np.clip(_scipy_stats().kstwo.sf(d, n), 0.0, 1.0))


def ks_p_value(statistic: float, reference: Ecdf, current: Sample) -> float:
    """Two-sided p as `ks_2samp(method="auto")`: exact for small samples, else `kstwo.sf`."""
    n1, n2 = reference.n, current.n
    if max(n1, n2) <= KS_EXACT_MAX_N:
        assert isinstance(current, Ecdf), "only large samples are bucketed"
        with warnings.catch_warnings():
            # scipy warns when the exact method fails and it falls back to the asymptotic one
            warnings.simplefilter("ignore", RuntimeWarning)
            exact = _scipy_stats().ks_2samp(reference.sorted_values(), current.sorted_values())
            return float(exact.pvalue)
    return _asymptotic_p_value(statistic, n1, n2)


def _asymptotic_p_value(statistic: float, n1: int, n2: int) -> float:
    m, k = sorted([float(n1), float(n2)], reverse=True)
    return kstwo_sf(statistic, float(np.round(m * k / (m + k))))


def ks_drift(
    reference: Ecdf | np.ndarray,
    current: np.ndarray | Sample,
    *,
    feature: str,
    min_samples: int = 30,
    n_current_missing: int = 0,
    gap: EcdfGap | None = None,
) -> FeatureDrift:
    """KS drift of the current sample against the reference.

    `reference` is an `Ecdf` or an ascending NaN-free array. `current` is raw values (NaN =
    missing), or the present ones as an `Ecdf` or in buckets (tasks/stats/buckets.py) with
    `n_current_missing` counted apart, and then `gap` their `ecdf_gap` (required in buckets;
    the pictures need it too).
    """
    ref = reference if isinstance(reference, Ecdf) else ecdf_of_sorted(reference)
    cur: Sample | None
    if not isinstance(current, np.ndarray):
        cur, n_missing, n2 = current, n_current_missing, current.n
    else:
        values = np.asarray(current, dtype=np.float64)
        n_missing = int(np.count_nonzero(np.isnan(values)))
        n2 = values.size - n_missing
        # present values that fit one chunk are sorted whole (scipy's exact p-value of a small
        # sample needs that anyway, and it is quickest); more are counted chunk by chunk
        cur = ecdf_of(values)[0] if n2 <= _KS_CHUNK else None
    n1 = ref.n
    missing_ratio = _missing_ratio(n_missing, n2 + n_missing)
    if min(n1, n2) < max(min_samples, 1):
        return FeatureDrift(
            feature, "ks", math.nan, math.nan, n1, n2, missing_ratio, "insufficient_data"
        )
    if cur is None:
        d = ks_statistic_of_values(ref, values)
        p = _asymptotic_p_value(d, n1, n2)
    else:
        if gap is None:
            assert isinstance(cur, Ecdf), "a bucketed sample comes with its gap"
            gap = ecdf_gap(ref, cur)
        d = gap.statistic
        p = ks_p_value(d, ref, cur)
    return FeatureDrift(feature, "ks", d, p, n1, n2, missing_ratio)


def total_variation_distance(ref: np.ndarray, cur: np.ndarray, n1: int, n2: int) -> float:
    """0.5 * sum |ref / n1 - cur / n2|, in exact integers and divided once: never above 1."""
    if 2 * n1 * n2 < 2**62:
        return int(np.abs(ref * n2 - cur * n1).sum()) / (2 * n1 * n2)
    return min(1.0, float(0.5 * np.abs(ref / n1 - cur / n2).sum()))


def chi2_drift(
    reference_counts: Mapping[str, int],
    current_counts: Mapping[str, int],
    *,
    feature: str,
    n_current_missing: int = 0,
    min_samples: int = 30,
) -> FeatureDrift:
    """Chi-square homogeneity p and total variation distance over the categories seen."""
    categories = sorted(
        {c for c, n in reference_counts.items() if n > 0}
        | {c for c, n in current_counts.items() if n > 0}
    )
    ref = np.array([reference_counts.get(c, 0) for c in categories], dtype=np.int64)
    cur = np.array([current_counts.get(c, 0) for c in categories], dtype=np.int64)
    n1, n2 = int(ref.sum()), int(cur.sum())
    missing_ratio = _missing_ratio(n_current_missing, n2 + n_current_missing)
    if min(n1, n2) < max(min_samples, 1):
        return FeatureDrift(
            feature, "chi2", math.nan, math.nan, n1, n2, missing_ratio, "insufficient_data"
        )
    tvd = total_variation_distance(ref, cur, n1, n2)
    # a category absent from one sample still has a positive expected count in both rows
    p = float(_scipy_stats().chi2_contingency(np.vstack([ref, cur])).pvalue)
    return FeatureDrift(feature, "chi2", tvd, p, n1, n2, missing_ratio)


def decide(
    drifts: Sequence[FeatureDrift],
    rule: DriftRule,
    rules: Mapping[str, DriftRule] | None = None,
) -> list[FeatureDrift]:
    """Adjust p-values over the tested features (Benjamini-Hochberg) and flag drift, with a
    feature's own rule from `rules` where it has one."""
    rules = rules or {}
    tested = [i for i, d in enumerate(drifts) if d.status == "ok"]
    adjusted = np.full(len(drifts), math.nan)
    if tested:
        raw = np.array([drifts[i].p_value for i in tested])
        adjusted[tested] = _scipy_stats().false_discovery_control(raw, method="bh")
    return [
        replace(
            d,
            p_value_adjusted=float(adjusted[i]),
            is_drifted=_flagged(d, float(adjusted[i]), rules.get(d.feature, rule)),
        )
        for i, d in enumerate(drifts)
    ]


def _flagged(drift: FeatureDrift, adjusted: float, rule: DriftRule) -> bool:
    """Significant, large enough, and (where the reference's days taught it) beyond a normal
    day's score."""
    return (
        drift.status == "ok"
        and adjusted < rule.alpha
        and drift.score >= rule.min_score
        and not drift.score <= drift.normal_upper  # NaN: no normal range, no third gate
    )


def decide_single(drift: FeatureDrift, rule: DriftRule) -> FeatureDrift:
    """One test on its own (the prediction): the raw p-value is the adjusted one."""
    return decide([drift], rule)[0]

"""Drift statistics as plain functions over arrays (contract section 4).

Numeric features and the prediction: two-sample Kolmogorov-Smirnov with scipy `ks_2samp`
semantics. Categorical features: chi-square test of homogeneity (`chi2_contingency` defaults) on
the 2 x k table over the categories seen in either sample, scored by total variation distance.
Missing values are left out and reported as a ratio. Which features drift is decided over all of
them at once: Benjamini-Hochberg adjusted p below `alpha` and score at least `min_score`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats

from driftline.settings import DriftRule

TestName = Literal["ks", "chi2"]
Status = Literal["ok", "insufficient_data"]

# scipy's ks_2samp computes the exact distribution up to this many values per sample (method="auto")
KS_EXACT_MAX_N = 10_000


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


def _missing_ratio(n_missing: int, n_total: int) -> float:
    return n_missing / n_total if n_total else 0.0


def ks_statistic(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """D of two sorted samples, computed as scipy's `ks_2samp` does."""
    data_all = np.concatenate([reference_sorted, current_sorted])
    cdf1 = np.searchsorted(reference_sorted, data_all, side="right") / reference_sorted.size
    cdf2 = np.searchsorted(current_sorted, data_all, side="right") / current_sorted.size
    diffs = cdf1 - cdf2
    return float(max(np.clip(-np.min(diffs), 0, 1), np.max(diffs)))


def ks_p_value(statistic: float, reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """Two-sided p as `ks_2samp(method="auto")`: exact for small samples, else `kstwo.sf`."""
    n1, n2 = reference_sorted.size, current_sorted.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        return float(stats.ks_2samp(reference_sorted, current_sorted).pvalue)
    en = n1 * n2 / (n1 + n2)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0, 1))


def ks_drift(
    reference_sorted: np.ndarray,
    current: np.ndarray,
    *,
    feature: str,
    min_samples: int = 30,
    reference_missing: int = 0,
) -> FeatureDrift:
    """KS drift of `current` (NaN = missing) against the sorted, NaN-free reference."""
    present = current[~np.isnan(current)]
    missing_ratio = _missing_ratio(current.size - present.size, current.size)
    n1, n2 = reference_sorted.size, present.size
    if min(n1, n2) < max(min_samples, 1):
        return FeatureDrift(
            feature, "ks", math.nan, math.nan, n1, n2, missing_ratio, "insufficient_data"
        )
    current_sorted = np.sort(present)
    d = ks_statistic(reference_sorted, current_sorted)
    p = ks_p_value(d, reference_sorted, current_sorted)
    return FeatureDrift(feature, "ks", d, p, n1, n2, missing_ratio)


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
    tvd = float(0.5 * np.abs(ref / n1 - cur / n2).sum())
    if len(categories) < 2:
        p = 1.0  # one category in both samples: nothing differs (scipy: dof 0, p 1)
    else:
        p = float(stats.chi2_contingency(np.vstack([ref, cur])).pvalue)
    return FeatureDrift(feature, "chi2", tvd, p, n1, n2, missing_ratio)


def decide(drifts: Sequence[FeatureDrift], rule: DriftRule) -> list[FeatureDrift]:
    """Adjust p-values over the tested features (Benjamini-Hochberg) and flag drift."""
    tested = [i for i, d in enumerate(drifts) if d.status == "ok"]
    adjusted = np.full(len(drifts), math.nan)
    if tested:
        raw = np.array([drifts[i].p_value for i in tested])
        adjusted[tested] = stats.false_discovery_control(raw, method="bh")
    return [
        replace(
            d,
            p_value_adjusted=float(adjusted[i]),
            is_drifted=bool(
                d.status == "ok" and adjusted[i] < rule.alpha and d.score >= rule.min_score
            ),
        )
        for i, d in enumerate(drifts)
    ]


def decide_single(drift: FeatureDrift, rule: DriftRule) -> FeatureDrift:
    """One test on its own (the prediction): the raw p-value is the adjusted one."""
    return decide([drift], rule)[0]

"""What a normal day looks like: how far each feature's score moves from one reference day to
the next (docs/statistics.md, "A normal day").

Real batches are not random draws from the reference: each day has its own weather, weekday and
schedule, so a day's score (D or TVD against the reference) is the day's own shift plus the
sampling noise of its rows. When the reference's rows carry their days (its `batch_date`
column), each reference day is scored against the rest of the reference and the sampling part
is taken out, leaving the between-day part. A night is then drifted only when its score leaves
the range of a normal day of its size, on top of the test, Benjamini-Hochberg and the effect gate.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_lake.columns import BATCH_DATE, PREDICTION
from tasks.stats.columns import as_float, category_counts
from tasks.stats.drift import ks_statistic, total_variation_distance
from tasks.stats.ecdf import ecdf_of
from tasks.stats.profile import FeatureProfile, NormalRange, NumericProfile, ReferenceProfile

# fewer reference days with enough rows: no range is learned, the fixed rule alone decides
MIN_DAYS = 5
# a reference day with fewer present values says too little of its shift to count
MIN_DAY_ROWS = 30
# a normal day's shift exceeds BETWEEN_Z times their root mean square on about 1 % of days
BETWEEN_Z = 2.58
# the median of the Kolmogorov distribution, scipy.stats.kstwobign.ppf(0.5): the typical
# sqrt(n_eff) * D of two samples of one distribution
KOLMOGOROV_MEDIAN = 0.8275735551899077


def normal_upper(normal: NormalRange, reference: FeatureProfile, n_current: int) -> float:
    """The largest score a normal day of `n_current` rows reaches: its shift and the typical
    sampling score of that many rows, added in quadrature."""
    return math.hypot(normal.between, sampling_score(reference, n_current))


def sampling_score(reference: FeatureProfile, n_current: int) -> float:
    """The typical score of `n_current` rows drawn from the reference itself: the Kolmogorov
    median over sqrt(n_eff) for D; for TVD, half the sum over categories of the mean absolute
    difference of two shares, sqrt(2 p (1 - p) / (pi n_eff)) each."""
    n_reference = _present(reference)
    if n_current <= 0 or n_reference <= 0:
        return math.inf
    n_eff = n_current * n_reference / (n_current + n_reference)
    if isinstance(reference, NumericProfile):
        return KOLMOGOROV_MEDIAN / math.sqrt(n_eff)
    shares = np.array(list(reference.counts.values()), dtype=np.float64) / n_reference
    return float(0.5 * np.sum(np.sqrt(2 * shares * (1 - shares) / (math.pi * n_eff))))


def _present(profile: FeatureProfile) -> int:
    if isinstance(profile, NumericProfile):
        return profile.ecdf.n
    return sum(profile.counts.values())


def with_normal_ranges(profile: ReferenceProfile, reference: pa.Table) -> ReferenceProfile:
    """The profile with each feature's and the prediction's normal range learned from the
    reference's days; unchanged when it has no `batch_date` column or fewer than MIN_DAYS
    usable days."""
    if BATCH_DATE not in reference.column_names:
        return profile
    days = np.asarray(pc.cast(reference.column(BATCH_DATE), pa.int32()).to_numpy())
    order = np.argsort(days, kind="stable")
    starts = np.flatnonzero(np.diff(days[order]) != 0) + 1
    groups = np.split(order, starts)
    if len(groups) < MIN_DAYS:
        return profile
    ranges = {}
    for name, feature in [*profile.features.items(), (PREDICTION, profile.prediction)]:
        column = reference.column(name)
        excess = [_day_excess(feature, column, rows) for rows in groups]
        usable = np.array([e for e in excess if e is not None])
        if usable.size >= MIN_DAYS:
            ranges[name] = NormalRange(int(usable.size), _between(usable))
    return replace(profile, normal=ranges)


def _between(excess: np.ndarray) -> float:
    """The upper end of a normal day's own shift: BETWEEN_Z times the root mean square of the
    days' shifts (their squared scores less the sampling part). A day's shift is the size of a
    difference, so it is folded at zero: half-normal, whose upper 1 % lies at 2.58 times its
    root mean square. The mean of all days is steadier than their largest few."""
    return BETWEEN_Z * math.sqrt(max(float(np.mean(excess)), 0.0))


def _day_excess(profile: FeatureProfile, column: pa.ChunkedArray, rows: np.ndarray) -> float | None:
    """One reference day's squared score against the rest of the reference, less the squared
    sampling score of its size; None for a day with too few values.

    The day is scored against the whole reference (whose profile is at hand) and rescaled: with
    w the day's share of the reference, F_day - F_all = (1 - w) (F_day - F_rest) at every
    point, for ECDFs and category shares alike, so both D and TVD divide by 1 - w exactly.
    """
    day = column.take(pa.array(rows))
    n_total = _present(profile)
    if isinstance(profile, NumericProfile):
        current = ecdf_of(as_float(day))[0]
        n_day = current.n
        if n_day < MIN_DAY_ROWS or n_day >= n_total:
            return None
        score = ks_statistic(profile.ecdf, current)
    else:
        counts, _ = category_counts(day)
        n_day = sum(counts.values())
        if n_day < MIN_DAY_ROWS or n_day >= n_total:
            return None
        categories = sorted(set(profile.counts) | set(counts))
        ref = np.array([profile.counts.get(c, 0) for c in categories], dtype=np.int64)
        cur = np.array([counts.get(c, 0) for c in categories], dtype=np.int64)
        score = total_variation_distance(ref, cur, n_total, n_day)
    rest = n_total - n_day
    against_rest = score * n_total / rest
    # sampling_score is for a sample against the whole reference; against the rest, n_eff is
    # n_day * rest / n_total, so the score scales by sqrt(n_total / rest)
    sampling = sampling_score(profile, n_day) * math.sqrt(
        (1 / n_day + 1 / rest) / (1 / n_day + 1 / n_total)
    )
    return against_rest**2 - sampling**2

"""Where two ECDFs are furthest apart: the KS statistic D of scipy's `ks_2samp`, and a point
that attains it (the pictures mark it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.stats.ecdf import Ecdf

# distinct reference values per stretch whose largest difference is first only bounded
_STRETCH = 32


@dataclass(frozen=True)
class EcdfGap:
    """D = |F_reference(x) - F_current(x)| at `x`, the largest over the real line."""

    statistic: float
    x: float  # a value of either sample
    reference_at: int  # reference values <= x
    current_at: int  # current values <= x


def ecdf_gap(reference: Ecdf, current: Ecdf) -> EcdfGap:
    """D of scipy's `ks_2samp` (which evaluates both ECDFs at every value of both samples), and
    where; both samples non-empty.

    The distinct reference values are cut into stretches of `_STRETCH`, starting at r[0],
    r[32], ...; one search of those starts in the current values gives both ECDFs just before
    each start, differences that occur. Inside a stretch neither ECDF leaves the range between
    its values at the two ends, which bounds the difference there; only the stretches whose
    bound beats the largest difference found are evaluated exactly, at each distinct current
    value in them: "reference minus current" peaks just before a current value (the current
    ECDF is flat until it), "current minus reference" at one. Differences are taken in exact
    integers (a * n2 - c * n1) and divided once, as D is; beyond int64, in floats.
    """
    n1, n2 = reference.n, current.n
    exact = n1 * n2 < 2**62
    ref_values = reference.values
    starts = np.arange(0, ref_values.size, _STRETCH)
    # per stretch start, and +inf after the last: distinct current values before it, and
    # how many values of each sample lie below it
    pos = np.append(np.searchsorted(current.values, ref_values[starts], side="left"), 0)
    pos[-1] = current.values.size
    ref_below = np.append(reference.below(starts), n1)
    cur_below = current.below(pos)

    def diff(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """F_reference - F_current from counts, scaled by n1 * n2 when exact."""
        return a * n2 - c * n1 if exact else a / n1 - c / n2

    at_starts = np.abs(diff(ref_below, cur_below))
    i = int(np.argmax(at_starts))
    best, pair = at_starts[i], (int(ref_below[i]), int(cur_below[i]))
    # in stretch j the reference ECDF lies within [ref_below[j], ref_below[j + 1]] and the
    # current one within [cur_below[j], cur_below[j + 1]]; without a current value in it the
    # current ECDF is flat and the bound is met just before the next start (counted above)
    up = diff(ref_below[1:], cur_below[:-1])
    down = -diff(ref_below[:-1], cur_below[1:])
    open_ = np.flatnonzero((pos[1:] > pos[:-1]) & ((up > best) | (down > best)))
    if open_.size:
        lengths = pos[open_ + 1] - pos[open_]
        # the distinct current values of the open stretches, ascending
        first = np.repeat(pos[open_] - np.cumsum(lengths) + lengths, lengths)
        index = first + np.arange(first.size)
        values = current.values[index]
        k = np.searchsorted(ref_values, values, side="right")  # >= 1: values >= r[start]
        ref_at = reference.below(k)
        tied = ref_values[k - 1] == values
        ref_before = reference.below(k - tied) if tied.any() else ref_at
        cur_before, cur_at = current.below(index), current.below(index + 1)
        ups, downs = diff(ref_before, cur_before), -diff(ref_at, cur_at)
        iu, idn = int(np.argmax(ups)), int(np.argmax(downs))
        if ups[iu] > best:
            best, pair = ups[iu], (int(ref_before[iu]), int(cur_before[iu]))
        if downs[idn] > best:
            best, pair = downs[idn], (int(ref_at[idn]), int(cur_at[idn]))
    if pair == (0, 0):  # D = 0 (equal ECDFs): shown where both reach 1
        pair = (n1, n2)
    statistic = float(best) / (n1 * n2) if exact else float(best)
    x = max(_kth(reference, pair[0]), _kth(current, pair[1]))
    return EcdfGap(statistic, x, *pair)


def _kth(ecdf: Ecdf, k: int) -> float:
    """The k-th smallest value of the sample (1-based); -inf for k = 0.

    Every pair of counts above is how many values of each sample lie below (or at) one point
    t, so the larger of the two samples' k-th values is a sample value with the same counts.
    """
    if k == 0:
        return -np.inf
    if ecdf.counts_below is None:
        return float(ecdf.values[k - 1])
    return float(ecdf.values[np.searchsorted(ecdf.counts_below, k, side="left") - 1])

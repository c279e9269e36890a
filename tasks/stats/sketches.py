"""What a picture needs of a sample, kept small while the drift step has the sorted batch in hand.

`numeric_sketch`: 129 quantiles of each ECDF with the exact ECDF values there, and where the two
ECDFs are furthest apart; `categorical_sketch`: the shares of the most common categories. A few
kB a feature, whatever the batch size; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tasks.stats.ecdf import Ecdf

SKETCH_POINTS = 129  # quantile levels 0, 1/128, ..., 1 of each ECDF
_REFINE_INTERVALS = 16  # at most this many stretches between knots are searched exactly


@dataclass(frozen=True)
class NumericSketch:
    """Two ECDFs at a few knots, exact there, and where they are furthest apart.

    `*_x` ascending knots (the quantiles of both samples and the largest gap's position),
    `*_f` the fraction of that sample at or below each knot. `gap_x` is where
    |F_reference - F_current| is largest (the KS distance, or its sample's when `sampled`),
    `gap_reference` and `gap_current` the two ECDFs there.
    """

    reference_x: np.ndarray
    reference_f: np.ndarray
    current_x: np.ndarray
    current_f: np.ndarray
    n_reference: int
    n_current: int
    gap_x: float = math.nan
    gap_reference: float = math.nan
    gap_current: float = math.nan
    sampled: int = 0  # > 0: the current ECDF is of an evenly spaced sample of this many values


@dataclass(frozen=True)
class CategoricalSketch:
    """Shares of the most common categories (of either sample) and of all the others."""

    categories: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    other_reference: float
    other_current: float
    n_other: int
    new: tuple[str, ...]  # shown categories the reference never had
    gone: tuple[str, ...]  # shown categories this batch does not have
    n_new: int  # over all categories, shown or not
    n_gone: int
    n_reference: int
    n_current: int


Sketch = NumericSketch | CategoricalSketch


def _cdf(ecdf: Ecdf, x: np.ndarray) -> np.ndarray:
    """The fraction of the sample at or below each x."""
    below = ecdf.below(np.searchsorted(ecdf.values, x, side="right"))
    return np.asarray(below, dtype=np.float64) / ecdf.n


def _quantiles(ecdf: Ecdf, levels: np.ndarray) -> np.ndarray:
    """Order statistics at `levels` (values of the sample, never interpolated)."""
    positions = np.round(levels * (ecdf.n - 1)).astype(np.int64)
    if ecdf.counts_below is None:
        return ecdf.values[positions]
    return ecdf.values[np.searchsorted(ecdf.counts_below, positions, side="right") - 1]


def _largest_gap(reference: Ecdf, current: Ecdf, knots: np.ndarray) -> tuple[float, float, float]:
    """Where the ECDFs are furthest apart: (x, F_reference(x), F_current(x)).

    The gap is evaluated at the knots (the quantiles of both samples, min and max included);
    between two knots neither ECDF rises by more than its rise from one knot to the next, which
    bounds the gap there. Stretches whose bound beats the best gap found are searched exactly,
    at every value of either sample inside them, largest bound first.
    """
    f_ref, f_cur = _cdf(reference, knots), _cdf(current, knots)
    gaps = np.abs(f_ref - f_cur)
    best = int(np.argmax(gaps))
    found = (float(knots[best]), float(f_ref[best]), float(f_cur[best]))
    best_gap = float(gaps[best])
    bounds = np.maximum(f_ref[1:] - f_cur[:-1], f_cur[1:] - f_ref[:-1])
    for j in np.argsort(-bounds, kind="stable")[:_REFINE_INTERVALS]:
        if bounds[j] <= best_gap:
            break
        # every value of either sample strictly between the two knots; each sample's ECDF at
        # its own values is read off its counts, at the other's by a search of that stretch
        low, high = knots[j], knots[j + 1]
        i0 = np.searchsorted(reference.values, low, side="right")
        i1 = np.searchsorted(reference.values, high, side="left")
        j0 = np.searchsorted(current.values, low, side="right")
        j1 = np.searchsorted(current.values, high, side="left")
        ref_v, cur_v = reference.values[i0:i1], current.values[j0:j1]
        if ref_v.size + cur_v.size == 0:
            continue
        points = np.concatenate([ref_v, cur_v])
        r = np.concatenate(
            [
                reference.below(np.arange(i0 + 1, i1 + 1)),
                reference.below(i0 + np.searchsorted(ref_v, cur_v, side="right")),
            ]
        ) / float(reference.n)
        c = np.concatenate(
            [
                current.below(j0 + np.searchsorted(cur_v, ref_v, side="right")),
                current.below(np.arange(j0 + 1, j1 + 1)),
            ]
        ) / float(current.n)
        i = int(np.argmax(np.abs(r - c)))
        if abs(r[i] - c[i]) > best_gap:
            best_gap = float(abs(r[i] - c[i]))
            found = (float(points[i]), float(r[i]), float(c[i]))
    return found


def numeric_sketch(reference: Ecdf, current: Ecdf, *, sampled: int = 0) -> NumericSketch:
    """The sketch of two ECDFs (either may be empty): O(SKETCH_POINTS log n)."""
    levels = np.linspace(0.0, 1.0, SKETCH_POINTS)
    empty = np.empty(0)
    ref_q = _quantiles(reference, levels) if reference.n else empty
    cur_q = _quantiles(current, levels) if current.n else empty
    gap = (math.nan, math.nan, math.nan)
    if reference.n and current.n:
        gap = _largest_gap(reference, current, np.unique(np.concatenate([ref_q, cur_q])))
    extra = np.array([gap[0]]) if math.isfinite(gap[0]) else empty

    def knots(own: np.ndarray, ecdf: Ecdf) -> tuple[np.ndarray, np.ndarray]:
        if not ecdf.n:
            return empty, empty
        x = np.unique(np.concatenate([own, extra]))
        return x, _cdf(ecdf, x)

    ref_x, ref_f = knots(ref_q, reference)
    cur_x, cur_f = knots(cur_q, current)
    return NumericSketch(ref_x, ref_f, cur_x, cur_f, reference.n, current.n, *gap, sampled=sampled)


def categorical_sketch(
    reference: Mapping[str, int], current: Mapping[str, int], *, shown: int = 8
) -> CategoricalSketch:
    """The `shown` categories with the largest share in either sample, and the rest summed."""
    n_ref = sum(n for n in reference.values() if n > 0)
    n_cur = sum(n for n in current.values() if n > 0)
    seen = sorted(
        {c for c, n in reference.items() if n > 0} | {c for c, n in current.items() if n > 0}
    )

    def share(counts: Mapping[str, int], n: int, category: str) -> float:
        return counts.get(category, 0) / n if n else 0.0

    weight = {c: max(share(reference, n_ref, c), share(current, n_cur, c)) for c in seen}
    top = sorted(seen, key=lambda c: (-weight[c], c))[:shown]
    ref_shares = tuple(share(reference, n_ref, c) for c in top)
    cur_shares = tuple(share(current, n_cur, c) for c in top)
    new = [c for c in seen if reference.get(c, 0) <= 0]
    gone = [c for c in seen if current.get(c, 0) <= 0]
    return CategoricalSketch(
        categories=tuple(top),
        reference_shares=ref_shares,
        current_shares=cur_shares,
        other_reference=max(0.0, 1.0 - sum(ref_shares)) if n_ref else 0.0,
        other_current=max(0.0, 1.0 - sum(cur_shares)) if n_cur else 0.0,
        n_other=len(seen) - len(top),
        new=tuple(c for c in top if c in set(new)) if n_ref else (),
        gone=tuple(c for c in top if c in set(gone)) if n_cur else (),
        n_new=len(new) if n_ref else 0,
        n_gone=len(gone) if n_cur else 0,
        n_reference=n_ref,
        n_current=n_cur,
    )

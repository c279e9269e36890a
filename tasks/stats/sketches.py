"""What a picture needs of a sample, kept small while the drift step has the batch in hand.

`numeric_sketch`: 129 quantiles of each ECDF with the exact ECDF values there, and where the two
ECDFs are furthest apart (tasks/stats/ecdf_gap.py); `categorical_sketch`: the shares of the most
common categories. A few kB a feature, whatever the batch size; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tasks.stats.ecdf import Ecdf, Sample
from tasks.stats.ecdf_gap import EcdfGap, ecdf_gap

SKETCH_POINTS = 129  # quantile levels 0, 1/128, ..., 1 of each ECDF


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


def quantile_positions(n: int) -> np.ndarray:
    """The 0-based positions in a sorted sample of n values that a sketch shows."""
    return np.round(np.linspace(0.0, 1.0, SKETCH_POINTS) * (n - 1)).astype(np.int64)


def numeric_sketch(
    reference: Ecdf, current: Sample, *, sampled: int = 0, gap: EcdfGap | None = None
) -> NumericSketch:
    """The sketch of two samples (either may be empty), with `gap` their `ecdf_gap` when the
    caller has it (the KS test finds it; it must when `current` is not an `Ecdf`).

    The quantiles are order statistics (values of the sample, never interpolated).
    """
    empty = np.empty(0)
    found = (math.nan, math.nan, math.nan)
    if reference.n and current.n:
        if gap is None:
            assert isinstance(current, Ecdf), "a bucketed sample comes with its gap"
            gap = ecdf_gap(reference, current)
        found = (gap.x, gap.reference_at / reference.n, gap.current_at / current.n)
    extra = np.array([found[0]]) if math.isfinite(found[0]) else empty

    def knots(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        if not sample.n:
            return empty, empty
        own = sample.order_statistics(quantile_positions(sample.n))
        x = np.unique(np.concatenate([own, extra]))
        return x, np.asarray(sample.count_at_or_below(x), dtype=np.float64) / sample.n

    ref_x, ref_f = knots(reference)
    cur_x, cur_f = knots(current)
    return NumericSketch(
        ref_x, ref_f, cur_x, cur_f, reference.n, current.n, *found, sampled=sampled
    )


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

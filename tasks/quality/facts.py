"""What the checks need of a batch's column, taken while the drift step holds it sorted or
counted (tasks/stats/batch_drift.py): a few numbers per column, whatever the batch size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tasks.quality.expectations import SHAPE_LEVELS, order_statistic


@dataclass(frozen=True)
class NumericFacts:
    n_present: int
    n_missing: int
    n_distinct: int  # 1: a constant column; 2 stands for "more than one" in sampled columns
    shape: tuple[float, ...]  # quantiles at SHAPE_LEVELS (NaN without present values)
    n_outside: int  # present values outside the expected range (0 when none was asked)
    # present values that occur more than once; None when the column was not sorted whole
    tied: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CategoricalFacts:
    counts: Mapping[str, int]
    n_missing: int


ColumnFacts = NumericFacts | CategoricalFacts


def sorted_facts(
    values: np.ndarray,
    counts_below: np.ndarray | None,
    n_missing: int,
    value_range: tuple[float, float] | None,
) -> NumericFacts:
    """From the distinct present values (ascending) and the counts below each, as an ECDF holds
    them: every number by binary search, none by another pass over the column."""
    n = values.size if counts_below is None else int(counts_below[-1])
    if n == 0:
        return NumericFacts(0, n_missing, 0, (np.nan,) * len(SHAPE_LEVELS), 0)
    outside = 0
    if value_range is not None:
        low, high = value_range
        below = int(np.searchsorted(values, low, side="left"))
        above = int(np.searchsorted(values, high, side="right"))
        if counts_below is None:
            outside = below + (values.size - above)
        else:
            outside = int(counts_below[below]) + (n - int(counts_below[above]))
    tied = (
        np.empty(0) if counts_below is None else values[np.flatnonzero(np.diff(counts_below) > 1)]
    )
    return NumericFacts(
        n_present=n,
        n_missing=n_missing,
        n_distinct=values.size,
        shape=tuple(order_statistic(values, counts_below, level) for level in SHAPE_LEVELS),
        n_outside=outside,
        tied=tied,
    )


def unsorted_facts(
    values: np.ndarray,
    sample_values: np.ndarray,
    sample_counts_below: np.ndarray | None,
    value_range: tuple[float, float] | None,
) -> NumericFacts:
    """A column too large to be sorted whole: the range counted on all of it, the quantiles
    read off an evenly spaced sample's ECDF."""
    present = values[~np.isnan(values)]
    n = present.size
    if n == 0:
        return NumericFacts(0, values.size, 0, (np.nan,) * len(SHAPE_LEVELS), 0)
    outside = 0
    if value_range is not None:
        low, high = value_range
        outside = int(np.count_nonzero(present < low)) + int(np.count_nonzero(present > high))
    constant = float(present.min()) == float(present.max())
    return NumericFacts(
        n_present=n,
        n_missing=values.size - n,
        n_distinct=1 if constant else 2,
        shape=tuple(order_statistic(sample_values, sample_counts_below, lv) for lv in SHAPE_LEVELS),
        n_outside=outside,
    )

"""What the checks need of a batch's column, taken while the drift step holds it sorted, counted
or bucketed (tasks/stats/batch_drift.py): a few numbers per column, whatever the batch size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tasks.quality.expectations import SHAPE_LEVELS, order_statistic


@dataclass(frozen=True)
class NumericFacts:
    n_present: int
    n_missing: int
    # 1: a constant column; 2 stands for "more than one" where the column was not sorted whole
    n_distinct: int
    shape: tuple[float, ...]  # quantiles at SHAPE_LEVELS (NaN without present values)
    n_outside: int  # present values outside the expected range (0 when none was asked)
    # present values that occur more than once; None when the column was not sorted whole
    tied: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CategoricalFacts:
    counts: Mapping[str, int]
    n_missing: int


ColumnFacts = NumericFacts | CategoricalFacts


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

"""Empirical CDFs of float samples, and the sort that builds them: what the KS test compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.stats.buckets import BUCKETS, bucketing_of

# samples at least this large are sorted through buckets first (see `sort_floats`)
_BUCKET_SORT_MIN_N = 65_536
SAMPLE_SIZE = 16_384  # values drawn (evenly spaced) to place the buckets
_ROW = 128  # bucketed values sorted a row at a time before the final merge
# a large sample whose evenly spaced sample holds at most this share of distinct values is
# counted by hashing (`ecdf_of`) instead of sorted
_COUNTED_MAX_DISTINCT = 1 / 32


class Sample(Protocol):
    """What the KS gap, the pictures and the quality facts ask of a present (NaN-free) sample:
    an `Ecdf`, or a large batch in buckets (tasks/stats/buckets.py)."""

    @property
    def n(self) -> int: ...

    def order_statistics(self, positions: np.ndarray) -> np.ndarray: ...

    def count_below(self, x: np.ndarray) -> np.ndarray: ...

    def count_at_or_below(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Ecdf:
    """An empirical CDF: distinct values ascending, and how many values lie below each."""

    values: np.ndarray  # float64, distinct, NaN-free
    # int64, len(values) + 1: how many values are < values[i], the last one n; None when every
    # value occurs once (then it is 0, 1, 2, ...: not worth 8 bytes a row of a large batch)
    counts_below: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.values.size if self.counts_below is None else int(self.counts_below[-1])

    def below(self, positions: np.ndarray) -> np.ndarray:
        """How many values lie below `values[positions]` (position len(values): all of them)."""
        return positions if self.counts_below is None else self.counts_below[positions]

    def below_all(self) -> np.ndarray:
        """`counts_below`, materialised."""
        return self.below(np.arange(self.values.size + 1))

    def order_statistics(self, positions: np.ndarray) -> np.ndarray:
        """The values at 0-based `positions` of the sorted sample."""
        if self.counts_below is None:
            return self.values[positions]
        return self.values[np.searchsorted(self.counts_below, positions, side="right") - 1]

    def count_below(self, x: np.ndarray) -> np.ndarray:
        """How many values are < each x."""
        return self.below(np.searchsorted(self.values, x, side="left"))

    def count_at_or_below(self, x: np.ndarray) -> np.ndarray:
        """How many values are <= each x."""
        return self.below(np.searchsorted(self.values, x, side="right"))

    def repeated(self) -> np.ndarray:
        """The values that occur more than once."""
        if self.counts_below is None:
            return np.empty(0)
        return self.values[np.flatnonzero(np.diff(self.counts_below) > 1)]

    def sorted_values(self) -> np.ndarray:
        """The sample itself, sorted (ties repeated)."""
        if self.counts_below is None:
            return self.values
        return np.repeat(self.values, np.diff(self.counts_below))


def ecdf_of_sorted(values_sorted: np.ndarray) -> Ecdf:
    """The ECDF of an ascending, NaN-free sample (ties allowed)."""
    values_sorted = np.asarray(values_sorted, dtype=np.float64)
    n = values_sorted.size
    new_run = np.empty(n, dtype=bool)
    new_run[:1] = True
    # -0.0 == 0.0 here, as in scipy's searchsorted
    np.not_equal(values_sorted[1:], values_sorted[:-1], out=new_run[1:])
    if new_run.all():  # continuous data: every value distinct, nothing to gather
        return Ecdf(values_sorted)
    starts = np.flatnonzero(new_run)
    return Ecdf(values_sorted[starts], np.append(starts, n).astype(np.int64))


def sort_floats(values: np.ndarray) -> np.ndarray:
    """`np.sort(values)` for float64 (NaN last), in about 40% of its time on large samples.

    numpy's quicksort takes about 50 ns a value on this project's machines (its AVX-512
    partitioning is slow on AMD Zen 4). Large samples are first ordered by a 16-bit bucket (a
    linear map between the 0.1% and 99.9% quantiles of an evenly spaced sample; radix-sorted by
    numpy's stable argsort), which leaves a few dozen values out of order per bucket; rows of
    128 are then sorted on their own, and numpy's timsort merges what the rows' boundaries cut.
    The result is exactly sorted whatever the buckets: they only decide the speed. When the
    sample shows distinct values crowding one bucket (far-apart clusters), plain `np.sort`.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < _BUCKET_SORT_MIN_N:
        return np.sort(values)
    return _bucket_sort(values, sample_of(values))


def sample_of(values: np.ndarray) -> np.ndarray:
    """An evenly spaced sample of about `SAMPLE_SIZE` present values, sorted."""
    sample = np.sort(values[:: max(1, values.size // SAMPLE_SIZE)])
    return sample[: np.searchsorted(sample, np.nan, side="left")]


def _bucket_sort(values: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """`sort_floats` of a large sample, its buckets placed by `sample`."""
    bucketing = bucketing_of(sample)
    if bucketing is None:
        return np.sort(values)
    sample_buckets = bucketing.keys(sample)
    tallies = np.bincount(sample_buckets, minlength=BUCKETS)
    crowded = int(tallies.argmax())
    if tallies[crowded] > sample.size // 100:
        in_crowded = sample[sample_buckets == crowded]
        if in_crowded[0] != in_crowded[-1]:  # equal values in one bucket cost timsort nothing
            return np.sort(values)
    # NaN lands in the last bucket, after every value, as np.sort puts it
    ordered = np.take(values, np.argsort(bucketing.keys(values), kind="stable"))  # faster than []
    # rows of _ROW values sorted on their own (numpy's sorting networks, about 2 ns a value)
    # leave out of order only the buckets a row boundary cuts, which timsort merges in passing
    whole = ordered.size - ordered.size % _ROW
    ordered[:whole].reshape(-1, _ROW).sort(axis=1)
    ordered.sort(kind="stable")
    return ordered


def few_distinct(sample: np.ndarray) -> bool:
    """Whether an evenly spaced sample (`sample_of`) shows a column of few distinct values,
    which `ecdf_of` counts rather than sorts."""
    distinct = 1 + int(np.count_nonzero(sample[1:] != sample[:-1])) if sample.size else 0
    return distinct <= sample.size * _COUNTED_MAX_DISTINCT


def ecdf_of(values: np.ndarray) -> tuple[Ecdf, int]:
    """The ECDF of the present values and the number of missing (NaN) ones.

    A large sample of few distinct values (its evenly spaced sample says so) is counted by
    Arrow's hash table and only the distinct values are sorted: a few ms instead of a sort.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size >= _BUCKET_SORT_MIN_N:
        sample = sample_of(values)
        if few_distinct(sample):
            return _ecdf_by_counting(values)
        ordered = _bucket_sort(values, sample)
    else:
        ordered = np.sort(values)
    # np.sort puts NaN last and searchsorted agrees, so this finds the first NaN in O(log n)
    n_present = int(np.searchsorted(ordered, np.nan, side="left"))
    return ecdf_of_sorted(ordered[:n_present]), ordered.size - n_present


def _ecdf_by_counting(values: np.ndarray) -> tuple[Ecdf, int]:
    """`ecdf_of` from Arrow's count of each distinct value (-0.0 and 0.0 counted apart there,
    merged here as np.sort's equality has them; NaN is missing)."""
    tallies = pc.value_counts(pa.array(values))
    distinct = tallies.field("values").to_numpy(zero_copy_only=False)
    counts = tallies.field("counts").to_numpy(zero_copy_only=False)
    order = np.argsort(distinct, kind="stable")  # NaN last
    distinct, counts = distinct[order], counts[order]
    n_distinct = int(np.searchsorted(distinct, np.nan, side="left"))
    missing = int(counts[n_distinct:].sum())
    distinct, counts = distinct[:n_distinct], counts[:n_distinct]
    if not n_distinct:
        return Ecdf(distinct), missing
    starts = np.flatnonzero(np.r_[True, distinct[1:] != distinct[:-1]])
    below = np.zeros(starts.size + 1, dtype=np.int64)
    np.cumsum(np.add.reduceat(counts, starts), out=below[1:])
    if below[-1] == starts.size:  # every value once
        return Ecdf(distinct[starts]), missing
    return Ecdf(distinct[starts], below), missing

"""Large samples grouped into 65,536 buckets instead of sorted: every count and order statistic
the drift step asks of a batch, exact, from a histogram and the few buckets a question falls in.

A bucket is a range of values: `Bucketing.keys` maps values to bucket numbers monotonically
(a larger value never gets a smaller number), so bucket b holds exactly the values between
those of buckets b - 1 and b + 1, and how many values lie below bucket b is a cumulative sum of
the histogram. What a question needs beyond that (the 100th smallest value, how many values are
at most 0.37) is answered from the values of the one bucket it falls in, about 15 at 1M rows.
`Bucketed.resolve` gathers and sorts the buckets a list of questions needs, in one pass over the
batch, and `BucketedSample` answers them. Sorting the whole batch costs far more on this
project's machines (see `tasks.stats.ecdf.sort_floats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tasks.stats.scratch import scratch

BUCKETS = 2**16  # numbers fit uint16: numpy's stable argsort of them is a radix sort
# the last bucket takes NaN, and only NaN: a batch's missing values are counted, and left out,
# in the pass that buckets it
NAN_BUCKET = BUCKETS - 1
_BLOCK = 2**16  # values keyed at a time: the float temporary stays in the CPU's cache
# bucket numbers looked up at a time (widened to 8 bytes for `take`)
_PASS = 2**17
# `Bucketed.resolve` gives up (the caller sorts instead) past this share of the values
RESOLVE_MAX_SHARE = 1 / 8


@dataclass(frozen=True)
class Bucketing:
    """Bucket 0 below `low`, `BUCKETS - 2` from `low + (BUCKETS - 3) / scale` up, and equal
    widths between: a linear map, rounded down, which no rounding can make decrease. The
    edges are where the map puts them, a rounding either side of these: `starts_of` asks the
    map itself. NaN goes to `NAN_BUCKET`, after every value."""

    low: float
    scale: float

    def keys(self, values: np.ndarray) -> np.ndarray:
        """The bucket of each value; `NAN_BUCKET` for NaN."""
        keys = np.empty(values.size, dtype=np.uint16)
        block = scratch("position", min(values.size, _BLOCK), np.float64)
        origin = self.low - 1.0 / self.scale  # where bucket 1 starts, but for rounding
        with np.errstate(invalid="ignore", over="ignore"):
            for start in range(0, values.size, _BLOCK):
                part = values[start : start + _BLOCK]
                position = np.subtract(part, origin, out=block[: part.size])
                position *= self.scale
                np.clip(position, 0.0, NAN_BUCKET - 1, out=position)  # NaN stays NaN
                np.fmin(position, NAN_BUCKET, out=position)  # and only NaN becomes NAN_BUCKET
                keys[start : start + _BLOCK] = position
        return keys

    def edges(self, buckets: np.ndarray) -> np.ndarray:
        """Where each bucket starts by the map's formula, a rounding either side of where
        `keys` puts it (`starts_of` settles that)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.low + (np.asarray(buckets) - 1) / self.scale

    def starts_of(self, ascending: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Per bucket b of `buckets` (0 <= b <= BUCKETS), how many values of an ascending,
        NaN-free array lie in buckets before b, without keying the array: a search for b's
        lower edge, checked against `keys` of the values either side of the position found.
        Where rounding put the edge a value off, a search on the values' buckets themselves
        settles it (exact either way: `keys` never decreases)."""
        buckets = np.asarray(buckets, dtype=np.int64)
        n = ascending.size
        if n == 0:
            return np.zeros(buckets.size, dtype=np.int64)
        found = np.searchsorted(ascending, self.edges(buckets), side="left")
        # no value is in NAN_BUCKET: all lie before it
        found[buckets <= 0], found[buckets >= NAN_BUCKET] = 0, n
        inside = (buckets > 0) & (buckets < NAN_BUCKET)
        after_last_below = (found == 0) | (self._key_at(ascending, found - 1) < buckets)
        at_first_in = (found == n) | (self._key_at(ascending, found) >= buckets)
        off = np.flatnonzero(inside & ~(after_last_below & at_first_in))
        if off.size:
            found[off] = self._first_at_or_after(ascending, buckets[off])
        return found

    def _key_at(self, ascending: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The bucket of the value at each position (clamped to the array)."""
        return self.keys(ascending[np.clip(positions, 0, ascending.size - 1)])

    def _first_at_or_after(self, ascending: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Per bucket, the position of the first value in it or a later bucket: a binary
        search on the values' buckets, all buckets at once."""
        low = np.zeros(buckets.size, dtype=np.int64)
        high = np.full(buckets.size, ascending.size, dtype=np.int64)
        while (active := np.flatnonzero(low < high)).size:
            middle = (low[active] + high[active]) // 2
            before = self.keys(ascending[middle]) < buckets[active]
            low[active] = np.where(before, middle + 1, low[active])
            high[active] = np.where(before, high[active], middle)
        return low


@dataclass(frozen=True)
class ReferenceBuckets:
    """A large reference's histogram over buckets placed from its own quantiles, made once
    when the version is registered: a batch spread like the reference is bucketed the same
    way, and the reference side of its KS search is read here instead of searched
    (tasks/stats/ecdf_gap.py)."""

    bucketing: Bucketing
    starts: np.ndarray  # int64, BUCKETS + 1: how many reference values lie before bucket b

    def spreads(self, sample: np.ndarray, own: Bucketing | None) -> bool:
        """Whether a batch's evenly spaced sample spreads over these buckets about as over its
        `own` (its fullest bucket here holding at most twice what it holds in its own, give
        or take 8 values): a batch narrower than the reference, or beyond its range, gets
        buckets of its own. A batch with none of its own (its sample's quantiles equal) tries
        these; resolving then says whether they serve."""
        if not sample.size:
            return False
        fullest = _fullest(self.bucketing, sample)
        return own is None or fullest <= 2 * _fullest(own, sample) + 8


def _fullest(bucketing: Bucketing, sample: np.ndarray) -> int:
    """How many of an ascending sample's values share its fullest bucket: the longest run of
    one bucket number, as `keys` never decreases (no histogram of every bucket)."""
    keys = bucketing.keys(sample)
    ends = np.flatnonzero(keys[1:] != keys[:-1])
    return int(np.diff(ends, prepend=-1, append=keys.size - 1).max())


def bucketing_of(sample: np.ndarray) -> Bucketing | None:
    """Buckets spread over an ascending, NaN-free sample's 0.1% to 99.9% quantiles; None when
    those are equal or too far apart for a finite scale."""
    if sample.size < 2:
        return None
    low = float(sample[(sample.size - 1) // 1000])
    high = float(sample[(sample.size - 1) - (sample.size - 1) // 1000])
    with np.errstate(over="ignore"):
        scale = (BUCKETS - 4) / (high - low) if high > low else 0.0
    if not 0.0 < scale < math.inf:
        return None
    return Bucketing(low, scale)


class Bucketed:
    """A sample's histogram over a `Bucketing`: how many present values lie below each bucket.
    NaN is missing: counted (`missing`) in the same pass, and left out of everything else."""

    def __init__(self, values: np.ndarray, bucketing: Bucketing) -> None:
        self.values = values  # NaN included: resolving leaves it out
        self.bucketing = bucketing
        self.keys = bucketing.keys(values)
        counts = _tally(self.keys)
        self.missing = int(counts[NAN_BUCKET])
        counts[NAN_BUCKET] = 0
        self.counts = counts
        self.below = _below(self.counts)  # below[BUCKETS] = n

    @property
    def n(self) -> int:
        """How many values are present (not NaN)."""
        return int(self.below[-1])

    def buckets_of_positions(self, positions: np.ndarray) -> np.ndarray:
        """The bucket of each 0-based position in sorted order (0 <= position < n)."""
        return np.searchsorted(self.below, positions, side="right") - 1

    def buckets_of_values(self, x: np.ndarray) -> np.ndarray:
        """The bucket each value (NaN-free) would fall in."""
        return self.bucketing.keys(np.asarray(x, dtype=np.float64))

    def previous_filled(self, buckets: np.ndarray) -> np.ndarray:
        """Per bucket, the last non-empty bucket before it (-1: none)."""
        filled = np.flatnonzero(self.counts)
        found = np.searchsorted(filled, buckets, side="left") - 1
        return np.where(found >= 0, filled[np.maximum(found, 0)], -1)

    def resolve(self, buckets: np.ndarray) -> BucketedSample | None:
        """The sample with the values of `buckets` sorted, to answer questions that fall in
        them; None when those hold more than `RESOLVE_MAX_SHARE` of the values (a few crowded
        buckets: sorting the whole sample is then no dearer)."""
        wanted = np.zeros(BUCKETS, dtype=bool)
        buckets = np.asarray(buckets, dtype=np.int64)
        wanted[buckets[buckets >= 0]] = True
        if int(self.counts[wanted].sum()) > max(_BLOCK, self.n * RESOLVE_MAX_SHARE):
            return None
        parts = [np.empty(0)]
        for start in range(0, self.values.size, _PASS):
            keys = _widened(self.keys[start : start + _PASS])
            mask = wanted.take(keys, out=scratch("wanted", keys.size, np.bool_))
            parts.append(self.values[start : start + _PASS][mask])
        values = np.sort(np.concatenate(parts))
        # an empty bucket answers without values
        return BucketedSample(self, values, wanted | (self.counts == 0))


class BucketedSample:
    """A bucketed sample able to answer, exactly, questions falling in its resolved buckets;
    one falling elsewhere is a programming error (AssertionError)."""

    def __init__(self, bucketed: Bucketed, resolved: np.ndarray, answerable: np.ndarray) -> None:
        self._bucketed = bucketed
        self._resolved = resolved  # the values of the resolved buckets, ascending
        self._answerable = answerable  # per bucket
        self._resolved_keys = bucketed.bucketing.keys(resolved)

    @property
    def n(self) -> int:
        return self._bucketed.n

    def values_in(self, buckets: np.ndarray) -> np.ndarray:
        """The values of the given (resolved) buckets, ascending."""
        self._check(buckets)
        return self._resolved[np.isin(self._resolved_keys, buckets)]

    def _check(self, buckets: np.ndarray) -> None:
        if not bool(np.all(self._answerable[buckets])):
            raise AssertionError("a question fell in a bucket that was not resolved")

    def order_statistics(self, positions: np.ndarray) -> np.ndarray:
        """The values at 0-based `positions` of the sorted sample."""
        positions = np.asarray(positions, dtype=np.int64)
        buckets = self._bucketed.buckets_of_positions(positions)
        self._check(buckets)
        # values of buckets before b in `_resolved`: those resolved, as all are ascending
        first = self._first_resolved(buckets)
        return self._resolved[first + positions - self._bucketed.below[buckets]]

    def count_below(self, x: np.ndarray) -> np.ndarray:
        """How many values are < each x (NaN-free)."""
        return self._count(np.asarray(x, dtype=np.float64), "left")

    def count_at_or_below(self, x: np.ndarray) -> np.ndarray:
        """How many values are <= each x (NaN-free)."""
        return self._count(np.asarray(x, dtype=np.float64), "right")

    def _count(self, x: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
        buckets = self._bucketed.buckets_of_values(x).astype(np.int64)
        self._check(buckets)
        # resolved values of earlier buckets are all < x, of later ones all > x
        within = np.searchsorted(self._resolved, x, side=side) - self._first_resolved(buckets)
        return self._bucketed.below[buckets] + within

    def _first_resolved(self, buckets: np.ndarray) -> np.ndarray:
        """Per bucket, how many resolved values lie in buckets before it."""
        return np.searchsorted(self._resolved_keys, buckets, side="left")


def _tally(keys: np.ndarray) -> np.ndarray:
    """How many keys fall in each bucket, by one `np.add.at` of the 2-byte bucket numbers
    (numpy widens them itself; `np.bincount` of them widened here a pass at a time took a
    fifth more CPU). Like `np.bincount`, it holds the GIL while it counts."""
    counts = np.zeros(BUCKETS, dtype=np.int64)
    np.add.at(counts, keys, 1)
    return counts


def _widened(keys: np.ndarray) -> np.ndarray:
    """Bucket numbers as the indices numpy looks up with, in this thread's scratch array
    rather than the new one `take` would make of them."""
    wide = scratch("wide keys", keys.size, np.intp)
    np.copyto(wide, keys)
    return wide


def _below(counts: np.ndarray) -> np.ndarray:
    """Per bucket b, and last BUCKETS, how many values lie in the buckets before b."""
    below = np.zeros(BUCKETS + 1, dtype=np.int64)
    np.cumsum(counts, out=below[1:])
    return below

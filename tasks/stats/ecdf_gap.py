"""Where two ECDFs are furthest apart: the KS statistic D of scipy's `ks_2samp`, and the first
point that attains it (the pictures mark it).

Both ECDFs are step functions, so |F_reference - F_current| is constant between consecutive
values of the two samples. "Reference minus current" peaks just before a current value (the
current ECDF is flat until it), "current minus reference" at one. Both searches below first
bound the difference on stretches of the line (from both ECDFs at the stretch's ends, between
which neither leaves), and evaluate exactly only inside the stretches whose bound reaches the
largest difference found at the ends: at each current value in them. Differences are exact
integers (a * n2 - c * n1) divided once, as D is; beyond int64, floats. Of the points with the
largest difference, the one reported is the first (smallest x), whichever search found it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.stats.buckets import BUCKETS, Bucketed, BucketedSample
from tasks.stats.ecdf import Ecdf, Sample

# distinct reference values per stretch of `ecdf_gap`
_STRETCH = 32
# buckets per stretch of `BucketGap`'s first round, and how much finer each next round is
_COARSEST = 256
_SPLIT = 4


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

    The stretches are those of `_STRETCH` distinct reference values, starting at r[0],
    r[32], ...: one search of those starts in the current values gives both ECDFs just before
    each start.
    """
    search = _Search(reference, current.n)
    ref_values = reference.values
    starts = np.arange(0, ref_values.size, _STRETCH)
    # per stretch start, and +inf after the last: distinct current values before it, and
    # how many values of each sample lie below it
    pos = np.append(np.searchsorted(current.values, ref_values[starts], side="left"), 0)
    pos[-1] = current.values.size
    ref_below = np.append(reference.below(starts), search.n1)
    cur_below = current.below(pos)
    # stretch j holds the current values pos[j] to pos[j + 1]
    open_ = search.open_stretches(ref_below, cur_below, pos[1:] > pos[:-1])
    lengths = pos[open_ + 1] - pos[open_]
    # the distinct current values of the open stretches, ascending
    first = np.repeat(pos[open_] - np.cumsum(lengths) + lengths, lengths)
    return search.settle(current, current.values[first + np.arange(first.size)])


class BucketGap:
    """`ecdf_gap` of a bucketed current sample (tasks/stats/buckets.py): the buckets are the
    stretches. `needed` lists the buckets to resolve for `gap`: those in which the difference
    could reach the largest one between buckets, and the last filled bucket before each such
    point (its values tell where the point is).

    Unless the buckets are the reference's own, whose counts it stored, the reference is
    counted at a bucket's start only where that could matter: first at every `_COARSEST`-th
    bucket, then, `_SPLIT` times finer each round, inside the stretches still open. A stretch
    closed stays closed (the largest difference found only grows), so the last round's open
    stretches are the single buckets the full search would open.
    """

    def __init__(
        self, reference: Ecdf, current: Bucketed, starts: np.ndarray | None = None
    ) -> None:
        """`starts`: the reference's values before each bucket, when the buckets are the
        reference's own (`ReferenceBuckets`): read at every bucket at once."""
        self._search = _Search(reference, current.n)
        if starts is not None:
            self._open = self._search.open_stretches(starts, current.below, current.counts > 0)
            first = self._search.first_boundary
        else:
            self._open, first = self._coarse_to_fine(reference, current)
        self.needed = np.concatenate(
            [self._open, current.previous_filled(np.append(self._open, first))]
        )

    def _coarse_to_fine(self, reference: Ecdf, current: Bucketed) -> tuple[np.ndarray, int]:
        """The open buckets and the first boundary with the largest difference, the
        reference searched at the starts of the stretches still open, finer each round."""
        starts_of = current.bucketing.starts_of
        width = _COARSEST
        bounds = np.arange(0, BUCKETS + 1, width)
        ref_below = reference.below(starts_of(reference.values, bounds))
        while True:
            cur_below = current.below[bounds]
            open_ = self._search.open_stretches(
                ref_below, cur_below, cur_below[1:] > cur_below[:-1]
            )
            if width == 1:
                return bounds[open_], int(bounds[self._search.first_boundary])
            width //= _SPLIT
            split = (bounds[open_, None] + np.arange(width, width * _SPLIT, width)).ravel()
            at = np.searchsorted(bounds, split)
            bounds = np.insert(bounds, at, split)
            ref_below = np.insert(
                ref_below, at, reference.below(starts_of(reference.values, split))
            )

    def gap(self, resolved: BucketedSample) -> EcdfGap:
        """The gap, from the current sample resolved with (at least) `needed`."""
        values = resolved.values_in(self._open)  # ascending: its distinct values are
        return self._search.settle(resolved, values[np.r_[True, values[1:] != values[:-1]]])


class _Search:
    """The largest difference of two ECDFs: first at the ends of stretches, then inside."""

    def __init__(self, reference: Ecdf, n_current: int) -> None:
        self.reference = reference
        self.n1, self.n2 = reference.n, n_current
        self.exact = self.n1 * self.n2 < 2**62
        self.best: float | int = 0
        self.first_boundary = 0
        self.pair = (0, 0)

    def diff(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """F_reference - F_current from counts, scaled by n1 * n2 when exact."""
        return a * self.n2 - c * self.n1 if self.exact else a / self.n1 - c / self.n2

    def open_stretches(
        self, ref_below: np.ndarray, cur_below: np.ndarray, filled: np.ndarray
    ) -> np.ndarray:
        """The stretches whose bound reaches the largest difference at their ends.

        `*_below` count each sample's values below each stretch's start and, last, all of them;
        `filled` says which stretches hold a current value. In stretch j the reference ECDF
        lies between ref_below[j] and ref_below[j + 1], the current one between cur_below[j]
        and cur_below[j + 1]; one without a current value has a flat current ECDF and its
        largest difference just before the next start (an end already counted).
        """
        signed = self.diff(ref_below, cur_below)
        at_ends = np.abs(signed)
        i = int(np.argmax(at_ends))
        self.best, self.first_boundary = at_ends[i], i
        self.pair = (int(ref_below[i]), int(cur_below[i]))
        if not self.exact:
            up = self.diff(ref_below[1:], cur_below[:-1])
            down = -self.diff(ref_below[:-1], cur_below[1:])
            return np.flatnonzero(filled & ((up >= self.best) | (down >= self.best)))
        # the same bounds from the differences at the ends: in integers, with mass the
        # stretch's current values times n1, up = signed[j + 1] + mass and down = mass - signed[j]
        mass = np.diff(cur_below) * self.n1
        up = signed[1:] + mass
        down = np.subtract(mass, signed[:-1], out=mass)
        return np.flatnonzero(filled & ((up >= self.best) | (down >= self.best)))

    def settle(self, current: Sample, values: np.ndarray) -> EcdfGap:
        """The gap, given the distinct current values of the open stretches (ascending)."""
        best, pairs = self.best, [self.pair]
        if values.size:
            ref_before = self.reference.count_below(values)
            ref_at = self.reference.count_at_or_below(values)
            cur_before = current.count_below(values)
            cur_at = current.count_at_or_below(values)
            for diffs, ref, cur in (
                (self.diff(ref_before, cur_before), ref_before, cur_before),
                (-self.diff(ref_at, cur_at), ref_at, cur_at),
            ):
                i = int(np.argmax(diffs))  # the first of the largest: the smallest x
                if diffs[i] > best:
                    best, pairs = diffs[i], []
                if diffs[i] == best:
                    pairs.append((int(ref[i]), int(cur[i])))
        statistic = float(best) / (self.n1 * self.n2) if self.exact else float(best)
        if best == 0:  # D = 0 (equal ECDFs): shown where both reach 1
            pairs = [(self.n1, self.n2)]
        x, pair = min((self._x(current, a, c), (a, c)) for a, c in pairs)
        return EcdfGap(statistic, x, *pair)

    def _x(self, current: Sample, a: int, c: int) -> float:
        """The point with a reference and c current values at or below it, as the larger of
        the two samples' a-th and c-th values (both counts hold up to the next value)."""
        return max(_kth(self.reference, a), _kth(current, c))


def _kth(sample: Sample, k: int) -> float:
    """The k-th smallest value of the sample (1-based); -inf for k = 0."""
    if k == 0:
        return -np.inf
    return float(sample.order_statistics(np.array([k - 1]))[0])

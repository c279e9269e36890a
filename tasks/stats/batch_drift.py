"""Drift of a whole batch against the reference profile: every feature and the prediction."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from core.settings import DriftRule
from tasks.quality.expectations import SHAPE_LEVELS, NumericExpectation
from tasks.quality.facts import CategoricalFacts, ColumnFacts, NumericFacts, unsorted_facts
from tasks.stats.buckets import (
    Bucketed,
    BucketedSample,
    Bucketing,
    ReferenceBuckets,
    bucketing_of,
)
from tasks.stats.columns import as_float, category_counts
from tasks.stats.drift import FeatureDrift, chi2_drift, decide, decide_single, ks_drift
from tasks.stats.ecdf import Ecdf, Sample, ecdf_of, few_distinct, sample_of
from tasks.stats.ecdf_gap import BucketGap, EcdfGap, ecdf_gap
from tasks.stats.normal import normal_upper
from tasks.stats.profile import (
    PREDICTION,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
)
from tasks.stats.sketches import Sketch, categorical_sketch, numeric_sketch, quantile_positions

# below this many rows a batch is done before threads would pay for themselves
PARALLEL_MIN_ROWS = 50_000
# from this many present values a column of many distinct values is bucketed, not sorted
BUCKETED_MIN_N = 65_536
# a column the buckets cannot take is sorted whole up to this many present values, as
# `ks_drift` would sort it (its own chunk size); a larger one is counted in chunks there, and
# sketched from a sample
SORTED_WHOLE_MAX = 2**20
SKETCH_SAMPLE = 2**18


@dataclass(frozen=True)
class DriftOutcome:
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift
    # per feature and the prediction (under its column name): what the report's pictures need
    sketches: Mapping[str, Sketch] = field(default_factory=dict, compare=False)
    # a classifier's class probabilities (KS), flagged by BH among themselves
    probabilities: tuple[FeatureDrift, ...] = ()
    # per feature and the prediction: what the data-quality checks need (tasks/quality/facts.py)
    facts: Mapping[str, ColumnFacts] = field(default_factory=dict, compare=False)


def feature_drift(
    name: str, reference: FeatureProfile, column: pa.ChunkedArray, rule: DriftRule
) -> FeatureDrift:
    """One feature: KS on its ECDF, or chi-square on its category counts."""
    return measured(name, reference, column, rule)[0]


def measured(
    name: str,
    reference: FeatureProfile,
    column: pa.ChunkedArray,
    rule: DriftRule,
    value_range: tuple[float, float] | None = None,
) -> tuple[FeatureDrift, Sketch, ColumnFacts]:
    """`feature_drift`, the sketch of both samples and the column's facts for the quality
    checks (values outside `value_range` counted), from the one pass the test makes anyway:
    a large column of many distinct values in buckets (tasks/stats/buckets.py), any other
    sorted or counted whole; past `SORTED_WHOLE_MAX` values, if the buckets cannot take it,
    counted in chunks and sketched from a sample."""
    if not isinstance(reference, NumericProfile):
        counts, missing = category_counts(column)
        drift = chi2_drift(
            reference.counts,
            counts,
            feature=name,
            n_current_missing=missing,
            min_samples=rule.min_samples,
        )
        sketch = categorical_sketch(reference.counts, counts)
        return drift, sketch, CategoricalFacts(counts, missing)
    values = as_float(column)
    current: Sample
    bucketed = in_buckets(reference.ecdf, values, value_range, reference.buckets)
    if bucketed is not None:
        current, missing, gap = bucketed
        # which values repeat, and how many differ, would take a sort: the row check finds
        # repeated values itself, and 2 stands for "more than one" as in sampled columns
        ends = current.order_statistics(np.array([0, current.n - 1]))
        facts = numeric_facts(
            current, missing, value_range, n_distinct=1 if ends[0] == ends[1] else 2
        )
    elif values.size - int(np.count_nonzero(np.isnan(values))) <= SORTED_WHOLE_MAX:
        ecdf, missing = ecdf_of(values)
        # where the ECDFs are furthest apart: D for the test, the marked gap for the picture
        gap = ecdf_gap(reference.ecdf, ecdf) if reference.ecdf.n and ecdf.n else None
        current, facts = ecdf, ecdf_facts(ecdf, missing, value_range)
    else:
        drift = ks_drift(reference.ecdf, values, feature=name, min_samples=rule.min_samples)
        sample = ecdf_of(values[:: -(-values.size // SKETCH_SAMPLE)])[0]
        facts = unsorted_facts(values, sample.values, sample.counts_below, value_range)
        return drift, numeric_sketch(reference.ecdf, sample, sampled=sample.n), facts
    drift = ks_drift(
        reference.ecdf,
        current,
        feature=name,
        min_samples=rule.min_samples,
        n_current_missing=missing,
        gap=gap,
    )
    return drift, numeric_sketch(reference.ecdf, current, gap=gap), facts


def in_buckets(
    reference: Ecdf,
    values: np.ndarray,
    value_range: tuple[float, float] | None = None,
    buckets: ReferenceBuckets | None = None,
) -> tuple[BucketedSample, int, EcdfGap | None] | None:
    """A large column of many distinct values (NaN missing) in buckets, resolved for the KS
    gap, the sketch and the facts, with its number of missing values and the gap (None: an
    empty sample); None when the column is small, of few distinct values (`ecdf_of` counts
    those), or crowds the buckets it would need (then sorting costs no more). The buckets are
    the reference's own (`buckets`) when the column spreads over them, else the column's."""
    if values.size < BUCKETED_MIN_N:
        return None
    sample = sample_of(values)  # of the present values
    bounds = np.array(value_range if value_range is not None else (), dtype=np.float64)
    if few_distinct(sample) or np.isnan(bounds).any():
        return None
    for bucketing, starts in bucketings(sample, buckets):
        # NaN is counted and left out in the pass that buckets the column: no copy without it
        current = Bucketed(values, bucketing)
        if current.n < BUCKETED_MIN_N:
            return None
        missing = current.missing
        search = BucketGap(reference, current, starts) if reference.n else None
        positions = np.r_[
            quantile_positions(current.n), [round(lv * (current.n - 1)) for lv in SHAPE_LEVELS]
        ]
        needed = [
            current.buckets_of_positions(positions),
            current.buckets_of_values(bounds).astype(np.int64),
        ]
        resolved = current.resolve(np.concatenate([*needed, search.needed if search else []]))
        if resolved is not None:
            return resolved, missing, search.gap(resolved) if search else None
    return None


def bucketings(
    sample: np.ndarray, buckets: ReferenceBuckets | None
) -> Iterator[tuple[Bucketing, np.ndarray | None]]:
    """The buckets to try, in turn, for a column of this sample, each with the reference's
    values before each bucket when they are the reference's own: those first, when the
    column spreads over them, then the column's own."""
    own = bucketing_of(sample)
    if buckets is not None and buckets.spreads(sample, own):
        yield buckets.bucketing, buckets.starts
    if own is not None:
        yield own, None


def numeric_facts(
    sample: Sample,
    n_missing: int,
    value_range: tuple[float, float] | None,
    *,
    n_distinct: int,
    tied: np.ndarray | None = None,
) -> NumericFacts:
    """The facts the quality checks need of a numeric column's present values, by a few
    order statistics and counts, none by another pass over the column."""
    n = sample.n
    if n == 0:
        return NumericFacts(0, n_missing, 0, (np.nan,) * len(SHAPE_LEVELS), 0)
    outside = 0
    if value_range is not None:
        low, high = value_range
        outside = int(sample.count_below(np.array([low]))[0]) + (
            n - int(sample.count_at_or_below(np.array([high]))[0])
        )
    positions = np.array([round(level * (n - 1)) for level in SHAPE_LEVELS])
    return NumericFacts(
        n_present=n,
        n_missing=n_missing,
        n_distinct=n_distinct,
        shape=tuple(float(v) for v in sample.order_statistics(positions)),
        n_outside=outside,
        tied=tied,
    )


def ecdf_facts(ecdf: Ecdf, n_missing: int, value_range: tuple[float, float] | None) -> NumericFacts:
    """`numeric_facts` of a column sorted or counted whole: also which values repeat."""
    return numeric_facts(
        ecdf, n_missing, value_range, n_distinct=ecdf.values.size, tied=ecdf.repeated()
    )


def _with_normal(profile: ReferenceProfile, drift: FeatureDrift) -> FeatureDrift:
    """The drift with its normal day's upper score, where the reference's days taught one."""
    normal = profile.normal.get(drift.feature)
    if normal is None or drift.status != "ok":
        return drift
    reference = (
        profile.prediction if drift.feature == PREDICTION else profile.features[drift.feature]
    )
    return replace(drift, normal_upper=normal_upper(normal, reference, drift.n_current))


def drift_report(
    profile: ReferenceProfile,
    batch: pa.Table,
    rule: DriftRule,
    *,
    rules: Mapping[str, DriftRule] | None = None,
    exclude: Collection[str] = (),
    mute: Collection[str] = (),
    workers: int | None = None,
) -> DriftOutcome:
    """Test every feature but those in `exclude`, and the prediction; one column at a time per
    worker thread. A feature in `rules` is flagged by its own rule; one in `mute` is tested and
    marked muted.

    Sorting, searching and Arrow's kernels release the GIL, so features run side by side on
    `workers` threads (default: one per CPU for large batches), each holding only its column.
    """
    # Arrow's pool keeps the pages the batch was decoded in; handing them back before the
    # sorts start keeps a large run's peak memory near one copy of the batch
    pa.default_memory_pool().release_unused()
    jobs: list[tuple[str, FeatureProfile]] = [
        (name, p) for name, p in profile.features.items() if name not in exclude
    ]
    jobs.append((PREDICTION, profile.prediction))
    jobs.extend(profile.probabilities.items())

    expected = profile.expectations.features

    def run(job: tuple[str, FeatureProfile]) -> tuple[FeatureDrift, Sketch, ColumnFacts]:
        name, reference = job
        e = expected.get(name)
        value_range = (e.low, e.high) if isinstance(e, NumericExpectation) else None
        return measured(name, reference, batch.column(name), rule, value_range)

    if workers is None:
        workers = (os.cpu_count() or 1) if batch.num_rows >= PARALLEL_MIN_ROWS else 1
    if workers > 1:
        # the slow KS features first, the quick category counts last to even out the threads
        order = sorted(range(len(jobs)), key=lambda i: isinstance(jobs[i][1], CategoricalProfile))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = dict(zip(order, pool.map(run, [jobs[i] for i in order]), strict=True))
        results = [done[i] for i in range(len(jobs))]
    else:
        results = [run(job) for job in jobs]
    n_probabilities = len(profile.probabilities)
    tested = [_with_normal(profile, drift) for drift, _, _ in results]
    probabilities = tested[len(tested) - n_probabilities :]
    *features, prediction = tested[: len(tested) - n_probabilities]
    sketches = {drift.feature: sketch for drift, sketch, _ in results}
    facts = {drift.feature: column for drift, _, column in results}
    decided = tuple(
        replace(d, muted=True) if d.feature in mute else d for d in decide(features, rule, rules)
    )
    classes = tuple(decide(probabilities, rule, rules)) if probabilities else ()
    return DriftOutcome(
        decided, decide_single(prediction, rule), sketches, probabilities=classes, facts=facts
    )

"""The reference profile: what the drift tests need of the reference, computed once per version
(its file, `profile.arrow`, is tasks/edge/profile_file.py's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa

from data_lake.columns import PREDICTION
from model_registry.registry import FeatureSpec
from tasks.quality.expectations import (
    ColumnExpectation,
    Expectations,
    duplicate_share,
    learn_categorical,
    learn_numeric,
)
from tasks.stats.buckets import BUCKETS, ReferenceBuckets, bucketing_of
from tasks.stats.columns import category_counts, numeric_ecdf
from tasks.stats.ecdf import SAMPLE_SIZE, Ecdf, few_distinct

# references this large keep their buckets (a smaller one is searched in a few ms)
REFERENCE_BUCKETS_MIN_N = 2**16


@dataclass(frozen=True)
class NumericProfile:
    ecdf: Ecdf  # NaN-free
    n_missing: int
    # a large reference of many distinct values: its histogram over buckets of its own
    buckets: ReferenceBuckets | None = field(default=None, compare=False)

    @property
    def values_sorted(self) -> np.ndarray:
        return self.ecdf.sorted_values()


@dataclass(frozen=True)
class CategoricalProfile:
    counts: dict[str, int]
    n_missing: int


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class NormalRange:
    """A feature's normal day (tasks/stats/normal.py): `between` is the upper end of the days'
    own shifts, the part of a score no sample size takes away, learned from `days` days."""

    days: int
    between: float


@dataclass(frozen=True)
class ReferenceProfile:
    features: dict[str, FeatureProfile]
    prediction: FeatureProfile  # a classifier's predicted class is categorical
    n_rows: int
    # per feature and the prediction (under its column name); empty without reference days
    normal: Mapping[str, NormalRange] = field(default_factory=dict)
    # a classifier's `proba_<class>` columns, tested like numeric features
    probabilities: Mapping[str, NumericProfile] = field(default_factory=dict)
    # what the data-quality checks expect of each feature (tasks/quality/)
    expectations: Expectations = field(default_factory=Expectations)


class HasFeatures(Protocol):
    """A model card, or anything that knows the features before the card is written."""

    @property
    def features(self) -> Sequence[FeatureSpec]: ...


def numeric_profile(column: pa.ChunkedArray | pa.Array) -> NumericProfile:
    ecdf, n_missing = numeric_ecdf(column)
    return NumericProfile(ecdf, n_missing, reference_buckets(ecdf))


def reference_buckets(ecdf: Ecdf) -> ReferenceBuckets | None:
    """The reference's buckets, placed from its quantiles as a batch's are from its sample,
    with how many of its values lie before each; None for a reference smaller than
    `REFERENCE_BUCKETS_MIN_N` or of few distinct values (the batch's own serve then)."""
    if ecdf.n < REFERENCE_BUCKETS_MIN_N:
        return None
    positions = np.linspace(0, ecdf.n - 1, min(ecdf.n, SAMPLE_SIZE)).round().astype(np.int64)
    sample = ecdf.order_statistics(positions)
    bucketing = bucketing_of(sample)
    if bucketing is None or few_distinct(sample):
        return None
    # the distinct values ascend, so their bucket numbers do: a search finds each start
    first = np.searchsorted(bucketing.keys(ecdf.values), np.arange(BUCKETS + 1), side="left")
    return ReferenceBuckets(bucketing, np.asarray(ecdf.below(first), dtype=np.int64))


def build_profile(reference: pa.Table, card: HasFeatures) -> ReferenceProfile:
    """Fit the profile from the reference rows (features and prediction; a classifier's, whose
    card has `classes`, also each class probability)."""
    features: dict[str, FeatureProfile] = {}
    for spec in card.features:
        column = reference.column(spec.name)
        if spec.kind == "numeric":
            features[spec.name] = numeric_profile(column)
        else:
            features[spec.name] = CategoricalProfile(*category_counts(column))
    prediction = reference.column(PREDICTION)
    expectations = Expectations(
        expectations_of(features).features, duplicate_share(reference, [*features, PREDICTION])
    )
    classes: Sequence[str] = getattr(card, "classes", ())
    if classes:
        probabilities = {
            f"proba_{c}": numeric_profile(reference.column(f"proba_{c}")) for c in classes
        }
        predicted = CategoricalProfile(*category_counts(prediction))
        return ReferenceProfile(
            features,
            predicted,
            reference.num_rows,
            probabilities=probabilities,
            expectations=expectations,
        )
    return ReferenceProfile(
        features, numeric_profile(prediction), reference.num_rows, expectations=expectations
    )


def expectations_of(features: Mapping[str, FeatureProfile]) -> Expectations:
    """The data-quality expectations a profile's features teach (without the reference's
    repeated rows, which only the rows themselves tell)."""
    learned: dict[str, ColumnExpectation] = {}
    for name, feature in features.items():
        if isinstance(feature, NumericProfile):
            learned[name] = learn_numeric(
                feature.ecdf.values, feature.ecdf.counts_below, feature.n_missing
            )
        else:
            learned[name] = learn_categorical(feature.counts, feature.n_missing)
    return Expectations(learned, None, "profile")

"""The reference profile: what the drift tests need of the reference, computed once per version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from model_registry.registry import ModelCard
from tasks.columns import as_float, category_counts

PREDICTION = "prediction"


@dataclass(frozen=True)
class NumericProfile:
    values_sorted: np.ndarray  # NaN-free
    n_missing: int


@dataclass(frozen=True)
class CategoricalProfile:
    counts: dict[str, int]
    n_missing: int


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    features: dict[str, FeatureProfile]
    prediction: NumericProfile
    n_rows: int


def numeric_profile(column: pa.ChunkedArray | pa.Array) -> NumericProfile:
    values = as_float(column)
    present = values[~np.isnan(values)]
    return NumericProfile(np.sort(present), int(values.size - present.size))


def build_profile(reference: pa.Table, card: ModelCard) -> ReferenceProfile:
    features: dict[str, FeatureProfile] = {}
    for spec in card.features:
        column = reference.column(spec.name)
        if spec.kind == "numeric":
            features[spec.name] = numeric_profile(column)
        else:
            features[spec.name] = CategoricalProfile(*category_counts(column))
    return ReferenceProfile(
        features, numeric_profile(reference.column(PREDICTION)), reference.num_rows
    )

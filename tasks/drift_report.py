"""Drift of a whole batch against the reference profile: every feature and the prediction."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from driftline.settings import DriftRule
from tasks.columns import as_float, category_counts
from tasks.drift import FeatureDrift, chi2_drift, decide, decide_single, ks_drift
from tasks.profile import PREDICTION, NumericProfile, ReferenceProfile


@dataclass(frozen=True)
class DriftOutcome:
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift


def drift_report(profile: ReferenceProfile, batch: pa.Table, rule: DriftRule) -> DriftOutcome:
    drifts = []
    for name, ref in profile.features.items():
        column = batch.column(name)
        if isinstance(ref, NumericProfile):
            drifts.append(
                ks_drift(
                    ref.values_sorted, as_float(column), feature=name, min_samples=rule.min_samples
                )
            )
        else:
            counts, missing = category_counts(column)
            drifts.append(
                chi2_drift(
                    ref.counts,
                    counts,
                    feature=name,
                    n_current_missing=missing,
                    min_samples=rule.min_samples,
                )
            )
    prediction = ks_drift(
        profile.prediction.values_sorted,
        as_float(batch.column(PREDICTION)),
        feature=PREDICTION,
        min_samples=rule.min_samples,
    )
    return DriftOutcome(tuple(decide(drifts, rule)), decide_single(prediction, rule))

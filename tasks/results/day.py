"""The result of one nightly run, and its JSON form in the lake's monitoring area."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from core.policy import DEFAULT_VERSION
from core.settings import DEFAULT_ALERT_THRESHOLDS, AlertThresholds
from model_registry.registry import HoldoutMetrics
from model_registry.task import ClassifierHoldoutMetrics
from tasks.performance.band_check import BandCheck
from tasks.performance.cbpe import CalibrationQuality, ClassificationEstimate
from tasks.performance.classification import ClassificationMetrics
from tasks.performance.estimate import PerformanceEstimate
from tasks.performance.window import BatchPerformance, RegressionMetrics
from tasks.quality.checks import Finding
from tasks.stats.drift import FeatureDrift

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MonitoringResult:
    model: str
    model_version: str
    batch_date: date
    as_of: date  # labels arrived up to and including this day were used
    n_rows: int
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    performance: tuple[BatchPerformance, ...]  # every batch of the window, oldest first
    baseline: HoldoutMetrics | ClassifierHoldoutMetrics
    min_label_coverage: float
    unmatched_labels: int
    warnings: tuple[str, ...]
    # the batch's MAE and RMSE estimated before its labels; None without an estimator or rows
    estimate: PerformanceEstimate | None = None
    # the model's policy the day ran under (core/policy.py): its version and what it set
    policy_version: str = DEFAULT_VERSION
    excluded_features: tuple[str, ...] = ()
    performance_alert_ratio: float = DEFAULT_ALERT_THRESHOLDS.performance_alert_ratio
    estimate_alert_ratio: float = DEFAULT_ALERT_THRESHOLDS.estimate_alert_ratio
    # the features that may alert: drifted, not muted, and sustained as the policy asks
    # (tasks/day/persistence.py); None (a result built by hand) is the day's drifted features
    alerting_features: tuple[str, ...] | None = None
    # a classifier's (docs/contract.md, "Classifiers"): the share of each predicted class, the
    # drift of each class probability, the estimate before labels (CBPE) and how its
    # calibration held on the reference
    class_shares: Mapping[str, float] = field(default_factory=dict)
    probabilities: tuple[FeatureDrift, ...] = ()
    class_estimate: ClassificationEstimate | None = None
    calibration: CalibrationQuality | None = None
    # the reported batch's realized MAE against the band estimated for it on its own night;
    # None before it is labelled, or without that night's estimate
    band_check: BandCheck | None = None
    # data quality (tasks/quality/): the findings, muted ones marked, and the checks that ran
    # per feature ("_batch": the whole batch); results from before it have neither
    data_quality: tuple[Finding, ...] = ()
    data_quality_checked: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        """Features drifted on the day and not muted: those that may alert."""
        return [f.feature for f in self.features if f.is_drifted and not f.muted]

    @property
    def alerting(self) -> list[str]:
        """The features whose drift alerts (ml_feature_drift_detected)."""
        if self.alerting_features is None:
            return self.drifted_features
        return list(self.alerting_features)

    @property
    def alert_thresholds(self) -> AlertThresholds:
        """The ratios the day's policy alerts at: the reports draw and quote them."""
        return AlertThresholds(self.performance_alert_ratio, self.estimate_alert_ratio)

    @property
    def data_quality_issues(self) -> tuple[Finding, ...]:
        """The data-quality findings that count and alert: not muted by the policy."""
        return tuple(f for f in self.data_quality if not f.muted)

    @property
    def muted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.muted]

    @property
    def current_performance(self) -> BatchPerformance | None:
        """The latest batch with enough labels: the one whose metrics are reported."""
        covered = [
            p
            for p in self.performance
            if p.label_coverage_ratio >= self.min_label_coverage and p.metrics is not None
        ]
        return covered[-1] if covered else None


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def to_json(result: MonitoringResult) -> bytes:
    payload = {"schema_version": SCHEMA_VERSION, **asdict(result)}
    return (json.dumps(_clean(payload), indent=1, allow_nan=False) + "\n").encode()


def _drift(raw: dict[str, Any]) -> FeatureDrift:
    return FeatureDrift(
        **{
            **raw,
            "score": _nan(raw["score"]),
            "p_value": _nan(raw["p_value"]),
            "p_value_adjusted": _nan(raw["p_value_adjusted"]),
            "missing_ratio": _nan(raw["missing_ratio"]),
            "normal_upper": _nan(raw.get("normal_upper")),  # none before normal ranges
        }
    )


def _estimate(raw: dict[str, Any] | None) -> PerformanceEstimate | None:
    """Results written before estimates existed have none."""
    if not raw:
        return None
    return PerformanceEstimate(
        n_rows=raw["n_rows"],
        n_sampled=raw["n_sampled"],
        mae=_nan(raw["mae"]),
        mae_lower=_nan(raw["mae_lower"]),
        mae_upper=_nan(raw["mae_upper"]),
        mae_standard_error=_nan(raw["mae_standard_error"]),
        rmse=_nan(raw["rmse"]),
    )


def _metrics(raw: dict[str, Any]) -> RegressionMetrics | ClassificationMetrics:
    if "accuracy" in raw:
        return ClassificationMetrics.from_dict(raw)
    return RegressionMetrics(**{k: _nan(v) for k, v in raw.items()})


def _baseline(raw: dict[str, Any]) -> HoldoutMetrics | ClassifierHoldoutMetrics:
    numbers = {k: _nan(v) for k, v in raw.items()}
    return ClassifierHoldoutMetrics(**numbers) if "accuracy" in raw else HoldoutMetrics(**numbers)


def _class_estimate(raw: dict[str, Any] | None) -> ClassificationEstimate | None:
    if not raw:
        return None
    bands = {k: _nan(v) for k, v in raw.items() if k not in ("n_rows", "n_estimated", "calibrated")}
    return ClassificationEstimate(
        n_rows=int(raw["n_rows"]),
        n_estimated=int(raw["n_estimated"]),
        calibrated=bool(raw["calibrated"]),
        **bands,
    )


def _band_check(raw: dict[str, Any] | None) -> BandCheck | None:
    """Results written before the check have none."""
    if not raw:
        return None
    return BandCheck(
        batch_date=date.fromisoformat(raw["batch_date"]),
        realized_mae=_nan(raw["realized_mae"]),
        label_coverage_ratio=_nan(raw["label_coverage_ratio"]),
        estimated_mae=_nan(raw["estimated_mae"]),
        mae_lower=_nan(raw["mae_lower"]),
        mae_upper=_nan(raw["mae_upper"]),
        is_outside_band=bool(raw["is_outside_band"]),
    )


def from_json(payload: bytes) -> MonitoringResult:
    raw = json.loads(payload)
    return MonitoringResult(
        model=raw["model"],
        model_version=raw["model_version"],
        batch_date=date.fromisoformat(raw["batch_date"]),
        as_of=date.fromisoformat(raw["as_of"]),
        n_rows=raw["n_rows"],
        features=tuple(_drift(f) for f in raw["features"]),
        prediction=_drift(raw["prediction"]) if raw["prediction"] else None,
        performance=tuple(
            BatchPerformance(
                batch_date=date.fromisoformat(p["batch_date"]),
                n_rows=p["n_rows"],
                n_labelled=p["n_labelled"],
                label_coverage_ratio=p["label_coverage_ratio"],
                metrics=_metrics(p["metrics"]) if p["metrics"] else None,
            )
            for p in raw["performance"]
        ),
        baseline=_baseline(raw["baseline"]),
        min_label_coverage=raw["min_label_coverage"],
        unmatched_labels=raw["unmatched_labels"],
        warnings=tuple(raw["warnings"]),
        estimate=_estimate(raw.get("estimate")),
        policy_version=raw.get("policy_version", DEFAULT_VERSION),
        excluded_features=tuple(raw.get("excluded_features", ())),
        performance_alert_ratio=raw.get(
            "performance_alert_ratio", DEFAULT_ALERT_THRESHOLDS.performance_alert_ratio
        ),
        estimate_alert_ratio=raw.get(
            "estimate_alert_ratio", DEFAULT_ALERT_THRESHOLDS.estimate_alert_ratio
        ),
        alerting_features=None
        if raw.get("alerting_features") is None
        else tuple(raw["alerting_features"]),
        class_shares={str(k): float(v) for k, v in (raw.get("class_shares") or {}).items()},
        probabilities=tuple(_drift(f) for f in raw.get("probabilities", ())),
        class_estimate=_class_estimate(raw.get("class_estimate")),
        calibration=CalibrationQuality.from_dict(raw["calibration"])
        if raw.get("calibration")
        else None,
        band_check=_band_check(raw.get("band_check")),
        data_quality=tuple(
            Finding(**{**f, "value": _nan(f["value"])}) for f in raw.get("data_quality", ())
        ),
        data_quality_checked={k: tuple(v) for k, v in raw.get("data_quality_checked", {}).items()},
    )

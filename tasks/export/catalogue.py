"""Every metric driftline exposes (docs/contract.md, "Metrics"), declared once as a table.

Each `Gauge` names a metric, its help text, its labels and how its samples come from a run's
`MonitoringResult`. The same families serve the live push (no timestamps: the Pushgateway refuses
them) and the backfilled history (each sample stamped at its nightly run's scheduled time). Every
sample also carries `model_version`; a value that is NaN or absent is left out, so dashboards and
alerts see "unknown" rather than NaN. A night that fails pushes one gauge of its own,
`failure_families`, added to the model's group beside the last good night's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tasks.performance.window import BatchPerformance
from tasks.results.day import MonitoringResult
from tasks.stats.drift import FeatureDrift

JOB = "ml_monitoring"
# why a night failed: bad input (exit 2), storage failing through its retries, anything else
FailureReason = Literal["input", "storage", "error"]
UNKNOWN_VERSION = "unknown"  # a failed night's model_version before its card was read


@dataclass(frozen=True)
class RunStamp:
    """When the run that produced a result succeeded and how long it took."""

    finished_at_seconds: float
    duration_seconds: float


Samples = Iterable[tuple[tuple[str, ...], float | None]]  # (label values, value)


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]
    samples: Callable[[MonitoringResult, RunStamp], Samples]


def day_start_seconds(day: date) -> float:
    """00:00 UTC of `day` as Unix seconds."""
    return datetime.combine(day, time(), UTC).timestamp()


def _one(value: float | None) -> Samples:
    return [((), value)]


def _tested(r: MonitoringResult) -> list[FeatureDrift]:
    """Features with a test result; an empty batch has none."""
    return [d for d in r.features if d.status == "ok"] if r.n_rows else []


def _reported(r: MonitoringResult) -> tuple[FeatureDrift, ...]:
    """Every feature of a batch with rows (too little data is reported as not drifted)."""
    return r.features if r.n_rows else ()


def _prediction(r: MonitoringResult) -> FeatureDrift | None:
    p = r.prediction
    return p if r.n_rows and p is not None and p.status == "ok" else None


def _prediction_sample(value: Callable[[FeatureDrift], float]) -> Callable[..., Samples]:
    return lambda r, _: [] if (p := _prediction(r)) is None else _one(value(p))


def _baseline(field: str) -> Callable[..., Samples]:
    # a regressor's card has no accuracy, a classifier's no MAE: each pushes its own
    return lambda r, _: _one(getattr(r.baseline, field, None))


def _covered(value: Callable[[BatchPerformance], float | None]) -> Callable[..., Samples]:
    """A sample of the latest batch with enough label coverage, when there is one."""

    def samples(r: MonitoringResult, _: RunStamp) -> Samples:
        current = r.current_performance
        return [] if current is None or current.metrics is None else _one(value(current))

    return samples


def _performance(field: str) -> Callable[..., Samples]:
    return _covered(lambda p: getattr(p.metrics, field, None))


def _quality(r: MonitoringResult) -> Samples:
    """Every check that ran: the share or count found, 0 when clean (muted findings too)."""
    found: dict[tuple[str, str], float] = {(f.feature, f.check): f.value for f in r.data_quality}
    return [
        ((feature, check), found.get((feature, check), 0.0))
        for feature, checks in r.data_quality_checked.items()
        for check in checks
    ]


def _estimated(field: str) -> Callable[..., Samples]:
    """A sample of the monitored batch's estimate, when there is one."""
    return lambda r, _: [] if r.estimate is None else _one(getattr(r.estimate, field))


def _class_estimated(field: str) -> Callable[..., Samples]:
    """A sample of a classifier's estimate before labels (CBPE), when there is one."""
    return lambda r, _: [] if r.class_estimate is None else _one(getattr(r.class_estimate, field))


# (the metric's field, its realized gauge, its baseline gauge, what it is): names spelled out,
# as every other gauge's are, so that a name of the contract is found where it is defined
_CLASSIFIER_METRICS = (
    ("accuracy", "ml_model_accuracy", "ml_model_baseline_accuracy", "Accuracy"),
    (
        "balanced_accuracy",
        "ml_model_balanced_accuracy",
        "ml_model_baseline_balanced_accuracy",
        "Balanced accuracy (mean recall over the true classes)",
    ),
    ("f1_macro", "ml_model_f1_macro", "ml_model_baseline_f1_macro", "Macro F1"),
    (
        "roc_auc",
        "ml_model_roc_auc",
        "ml_model_baseline_roc_auc",
        "ROC AUC (multiclass: one-vs-rest macro)",
    ),
    ("log_loss", "ml_model_log_loss", "ml_model_baseline_log_loss", "Log loss"),
    (
        "brier",
        "ml_model_brier",
        "ml_model_baseline_brier",
        "Brier score (binary: positive class; multiclass: summed over classes)",
    ),
)
# (the estimate's field, its gauge, what it is, which end of the band)
_CLASSIFIER_ESTIMATES = (
    ("accuracy", "ml_model_estimated_accuracy", "Accuracy", ""),
    ("accuracy_lower", "ml_model_estimated_accuracy_lower", "Accuracy", ", band's lower end"),
    ("accuracy_upper", "ml_model_estimated_accuracy_upper", "Accuracy", ", upper end"),
    ("roc_auc", "ml_model_estimated_roc_auc", "ROC AUC", ""),
    ("roc_auc_lower", "ml_model_estimated_roc_auc_lower", "ROC AUC", ", band's lower end"),
    ("roc_auc_upper", "ml_model_estimated_roc_auc_upper", "ROC AUC", ", upper end"),
)


def _classifier_gauges() -> tuple[Gauge, ...]:
    """A classifier's gauges (docs/contract.md, "Classifiers"); a regressor has no samples."""
    realized = tuple(
        Gauge(gauge, f"{text} on that batch's labelled rows.", (), _performance(field))
        for field, gauge, _, text in _CLASSIFIER_METRICS
    )
    baseline = tuple(
        Gauge(gauge, f"Holdout {text} from the card.", (), _baseline(field))
        for field, _, gauge, text in _CLASSIFIER_METRICS
    )
    estimated = tuple(
        Gauge(
            gauge,
            f"{text} of the monitored batch estimated before its labels (CBPE){end}.",
            (),
            _class_estimated(field),
        )
        for field, gauge, text, end in _CLASSIFIER_ESTIMATES
    )
    shares = Gauge(
        "ml_prediction_class_share",
        "Share of the monitored batch's rows predicted as the class.",
        ("class",),
        lambda r, _: (
            [((label,), share) for label, share in r.class_shares.items()] if r.n_rows else []
        ),
    )
    return (shares, *realized, *baseline, *estimated)


CATALOGUE: tuple[Gauge, ...] = (
    Gauge(
        "ml_batch_timestamp_seconds",
        "Start (00:00 UTC) of the monitored batch day.",
        (),
        lambda r, _: _one(day_start_seconds(r.batch_date)),
    ),
    Gauge("ml_batch_rows", "Rows in the monitored batch.", (), lambda r, _: _one(r.n_rows)),
    Gauge(
        "ml_feature_drift_score",
        "Drift score: KS D or total variation distance.",
        ("feature", "test"),
        lambda r, _: [((d.feature, d.test), d.score) for d in _tested(r)],
    ),
    Gauge(
        "ml_feature_drift_p_value",
        "Raw p-value of the feature's drift test.",
        ("feature", "test"),
        lambda r, _: [((d.feature, d.test), d.p_value) for d in _tested(r)],
    ),
    Gauge(
        "ml_feature_drift_detected",
        "1 when the feature drifted, as the model's policy asks (not muted, sustained), else 0.",
        ("feature",),
        lambda r, _: [((d.feature,), float(d.feature in r.alerting)) for d in _reported(r)],
    ),
    Gauge(
        "ml_feature_drift_muted",
        "1 when the model's policy mutes the feature: tested and shown, never alerted.",
        ("feature",),
        lambda r, _: [((d.feature,), 1.0) for d in _reported(r) if d.muted],
    ),
    Gauge(
        "ml_feature_missing_ratio",
        "Share of missing values in the batch.",
        ("feature",),
        lambda r, _: [((d.feature,), d.missing_ratio) for d in _reported(r)],
    ),
    Gauge(
        "ml_features_monitored",
        "Features tested for drift that may alert (not muted).",
        (),
        lambda r, _: _one(sum(not d.muted for d in _tested(r))) if r.n_rows else [],
    ),
    Gauge(
        "ml_features_drifted",
        "Features flagged as drifted (those of ml_feature_drift_detected).",
        (),
        lambda r, _: _one(len(r.alerting)) if r.n_rows else [],
    ),
    Gauge(
        "ml_prediction_drift_score",
        "KS D of predictions vs reference (a classifier's: TVD of its predicted class shares).",
        (),
        _prediction_sample(lambda p: p.score),
    ),
    Gauge(
        "ml_prediction_drift_p_value",
        "p-value of predictions vs reference (KS; a classifier's: chi-square of its class shares).",
        (),
        _prediction_sample(lambda p: p.p_value),
    ),
    Gauge(
        "ml_prediction_drift_detected",
        "1 when predictions drifted, else 0.",
        (),
        _prediction_sample(lambda p: float(p.is_drifted)),
    ),
    Gauge(
        "ml_performance_batch_timestamp_seconds",
        "Latest batch day with enough label coverage.",
        (),
        _covered(lambda p: day_start_seconds(p.batch_date)),
    ),
    Gauge(
        "ml_label_coverage_ratio",
        "Labelled rows / batch rows of that batch.",
        (),
        _covered(lambda p: p.label_coverage_ratio),
    ),
    Gauge("ml_model_mae", "MAE on that batch's labelled rows.", (), _performance("mae")),
    Gauge("ml_model_rmse", "RMSE on that batch's labelled rows.", (), _performance("rmse")),
    Gauge("ml_model_mape", "MAPE on that batch's labelled rows.", (), _performance("mape")),
    Gauge("ml_model_r2", "R2 on that batch's labelled rows.", (), _performance("r2")),
    Gauge(
        "ml_data_quality_issue",
        "Data-quality check of a feature (_batch: the whole batch): the share or count found, "
        "0 when clean.",
        ("feature", "check"),
        lambda r, _: _quality(r),
    ),
    Gauge(
        "ml_data_quality_muted",
        "1 when the model's policy mutes the check for the feature: shown, never alerted.",
        ("feature", "check"),
        lambda r, _: [((f.feature, f.check), 1.0) for f in r.data_quality if f.muted],
    ),
    Gauge(
        "ml_data_quality_issues",
        "Data-quality findings in the batch that the policy does not mute.",
        (),
        lambda r, _: _one(len(r.data_quality_issues)) if r.data_quality_checked else [],
    ),
    Gauge(
        "ml_model_estimated_mae",
        "MAE of the monitored batch estimated before its labels (from features and predictions).",
        (),
        _estimated("mae"),
    ),
    Gauge(
        "ml_model_estimated_mae_lower",
        "Lower end of the estimated MAE's band.",
        (),
        _estimated("mae_lower"),
    ),
    Gauge(
        "ml_model_estimated_mae_upper",
        "Upper end of the estimated MAE's band.",
        (),
        _estimated("mae_upper"),
    ),
    Gauge(
        "ml_model_estimated_rmse",
        "RMSE of the monitored batch estimated before its labels.",
        (),
        _estimated("rmse"),
    ),
    Gauge("ml_model_baseline_mae", "Holdout MAE from the model card.", (), _baseline("mae")),
    Gauge("ml_model_baseline_rmse", "Holdout RMSE from the model card.", (), _baseline("rmse")),
    Gauge("ml_model_baseline_mape", "Holdout MAPE from the model card.", (), _baseline("mape")),
    Gauge("ml_model_baseline_r2", "Holdout R2 from the model card.", (), _baseline("r2")),
    *_classifier_gauges(),
    Gauge(
        "ml_policy_performance_alert_ratio",
        "MLPerformanceDegraded fires when the MAE is above this factor of the baseline.",
        (),
        lambda r, _: _one(r.performance_alert_ratio),
    ),
    Gauge(
        "ml_policy_estimate_alert_ratio",
        "MLEstimatedPerformanceDegraded fires when the estimate's lower end is above this factor.",
        (),
        lambda r, _: _one(r.estimate_alert_ratio),
    ),
    Gauge(
        "ml_policy_info",
        "1, labelled with the version of the model's policy the run applied.",
        ("policy_version",),
        lambda r, _: [((r.policy_version,), 1.0)],
    ),
    Gauge(
        "ml_monitoring_last_success_timestamp_seconds",
        "When the nightly run succeeded.",
        (),
        lambda _, run: _one(run.finished_at_seconds),
    ),
    Gauge(
        "ml_monitoring_run_duration_seconds",
        "How long the nightly run took.",
        (),
        lambda _, run: _one(run.duration_seconds),
    ),
)


def metric_families(
    result: MonitoringResult,
    run: RunStamp,
    *,
    timestamp: float | None = None,
    with_group_labels: bool = False,
) -> list[Metric]:
    """The gauges of one nightly run, in catalogue order; a gauge without samples is left out.

    For the history export, `timestamp` stamps every sample and `with_group_labels` adds the
    job and model labels that the Pushgateway's grouping key gives live series.
    """
    base = {"job": JOB, "model": result.model} if with_group_labels else {}
    base["model_version"] = result.model_version
    families: list[Metric] = []
    for gauge in CATALOGUE:
        family = GaugeMetricFamily(gauge.name, gauge.help, labels=[*base, *gauge.labels])
        for labels, value in gauge.samples(result, run):
            if value is None or math.isnan(value):
                continue
            family.add_metric([*base.values(), *labels], float(value), timestamp=timestamp)
        if family.samples:
            families.append(family)
    return families


def failure_families(model_version: str, reason: FailureReason, at_seconds: float) -> list[Metric]:
    """The one gauge a failed night pushes; the next good night's replaces the group and it."""
    family = GaugeMetricFamily(
        "ml_monitoring_last_failure_timestamp_seconds",
        "When the nightly run last failed, and why: input, storage or error.",
        labels=["model_version", "reason"],
    )
    family.add_metric([model_version, reason], at_seconds)
    return [family]


class _Static(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def registry_for(families: Iterable[Metric]) -> CollectorRegistry:
    """A fresh registry holding exactly these families (one per push or export)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return registry

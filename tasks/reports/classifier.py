"""What the day's report says of a classifier: class shares, the probabilities' drift, the
estimate before labels (CBPE) with how its calibration held on the reference, and the realized
accuracy and ROC AUC against the baseline."""

from __future__ import annotations

from core.settings import DEFAULT_ALERT_THRESHOLDS, AlertThresholds
from model_registry.task import ClassifierHoldoutMetrics
from tasks.performance.classification import ClassificationMetrics
from tasks.reports.numbers import percent, sig3
from tasks.results.day import MonitoringResult


def _floor(baseline: float, ratio: float) -> str:
    return f"alert below {sig3(baseline / ratio)} = baseline {sig3(baseline)} / {ratio:g}"


def class_share_fact(result: MonitoringResult) -> str:
    shares = ", ".join(f"{label} {percent(share)}" for label, share in result.class_shares.items())
    return f"predicted classes: {shares or 'none'}"


def calibration_fact(result: MonitoringResult) -> str:
    quality = result.calibration
    if quality is None:
        return "calibration: none (no estimate for the version: too few labelled reference rows)"
    verdict = (
        "needed: isotonic maps fitted on the reference"
        if quality.calibrated
        else "not needed: the model's own probabilities are used"
    )
    return (
        f"calibration {verdict} (expected calibration error out of fold on the reference "
        f"{sig3(quality.ece_raw)} raw, {sig3(quality.ece_calibrated)} calibrated); on the "
        f"reference the estimate gave accuracy {sig3(quality.accuracy_estimated)} for a realized "
        f"{sig3(quality.accuracy_realized)}, ROC AUC {sig3(quality.roc_auc_estimated)} for "
        f"{sig3(quality.roc_auc_realized)}"
    )


def classifier_facts(
    result: MonitoringResult, thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS
) -> list[str]:
    """The facts a regressor's report gives of its MAE, for a classifier."""
    baseline = result.baseline
    assert isinstance(baseline, ClassifierHoldoutMetrics)  # only called for a classifier
    facts = [class_share_fact(result)]
    drifted = [d.feature for d in result.probabilities if d.is_drifted]
    if result.probabilities:
        facts.append(f"class probabilities drifted: {', '.join(drifted) or 'none'}")
    estimate = result.class_estimate
    if estimate is not None:
        ratio = thresholds.estimate_alert_ratio
        facts.append(
            f"this batch, before its labels (CBPE): estimated accuracy {sig3(estimate.accuracy)} "
            f"(band {sig3(estimate.accuracy_lower)} to {sig3(estimate.accuracy_upper)}; "
            f"{_floor(baseline.accuracy, ratio)} for the band's upper end), estimated ROC AUC "
            f"{sig3(estimate.roc_auc)} (band {sig3(estimate.roc_auc_lower)} to "
            f"{sig3(estimate.roc_auc_upper)}; {_floor(baseline.roc_auc, ratio)})"
        )
    else:
        facts.append("this batch: no estimate (no rows, or no calibration for the version)")
    facts.append(calibration_fact(result))
    perf = result.current_performance
    if perf is not None and isinstance(perf.metrics, ClassificationMetrics):
        m, ratio = perf.metrics, thresholds.performance_alert_ratio
        facts.append(
            f"realized on batch {perf.batch_date} ({percent(perf.label_coverage_ratio)} "
            f"labelled): accuracy {sig3(m.accuracy)} ({_floor(baseline.accuracy, ratio)}), "
            f"ROC AUC {sig3(m.roc_auc)} ({_floor(baseline.roc_auc, ratio)}), balanced accuracy "
            f"{sig3(m.balanced_accuracy)}, macro F1 {sig3(m.f1_macro)}, log loss "
            f"{sig3(m.log_loss)}, Brier {sig3(m.brier)}"
        )
    else:
        covered = percent(result.min_label_coverage)
        facts.append(f"realized accuracy: no batch of the window has {covered} of its labels yet")
    facts.append(
        "which to trust: the estimate follows shifts of the inputs (covariate shift) but cannot "
        "see a change in how the classes follow the scores (concept drift); once labels reach "
        "the coverage, the realized numbers confirm or overrule it"
    )
    return facts

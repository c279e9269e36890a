"""The classifier's performance picture in the day's report: accuracy and ROC AUC per batch of
the window against the baseline and the alert line, the estimate of the monitored batch, and
the reliability diagram of the newest batch with enough labels (drawn with
tasks/reports/plots.py)."""

from __future__ import annotations

import math

from core.settings import DEFAULT_ALERT_THRESHOLDS, AlertThresholds
from model_registry.task import ClassifierHoldoutMetrics
from tasks.performance.classification import ClassificationMetrics
from tasks.reports.numbers import sig3
from tasks.reports.plots import (
    BLUE,
    DRAWING,
    GAP_COLOR,
    MUTED,
    TEXT,
    Box,
    canvas,
    figure,
    svg_bytes,
)
from tasks.results.day import MonitoringResult

GREEN, ORANGE = "#3E8E41", "#D9822B"


def _window(box: Box, result: MonitoringResult, ratio: float, last_day: int) -> list[str]:
    """Accuracy (blue) and ROC AUC (orange) per batch, the baselines and the alert lines; the
    estimate of the monitored batch as a bar at its day. Returns the legend's lines."""
    baseline = result.baseline
    assert isinstance(baseline, ClassifierHoldoutMetrics)
    first = result.performance[0].batch_date if result.performance else result.batch_date
    xlim = box.xlim
    legend = []
    for name, color in (("accuracy", BLUE), ("roc_auc", ORANGE)):
        level = getattr(baseline, name)
        if math.isfinite(level):
            box.line(xlim, [level] * 2, color=color, lw=1.0, alpha=0.6)
            box.line(xlim, [level / ratio] * 2, color=GAP_COLOR, lw=1.0, ls=(0, (6, 4)))
        points = [
            ((p.batch_date - first).days, getattr(p.metrics, name))
            for p in result.performance
            if isinstance(p.metrics, ClassificationMetrics)
        ]
        points = [pt for pt in points if math.isfinite(pt[1])]
        if points:
            box.line([d for d, _ in points], [v for _, v in points], color=color, lw=1.3,
                     marker="o", ms=4)  # fmt: skip
        estimate = result.class_estimate
        if estimate is not None:
            low, high = getattr(estimate, f"{name}_lower"), getattr(estimate, f"{name}_upper")
            if math.isfinite(low) and math.isfinite(high):
                box.line([last_day] * 2, [low, high], color=color, lw=5, alpha=0.35)
        label = "accuracy" if name == "accuracy" else "ROC AUC"
        legend.append(f"{label}: baseline {sig3(level)}, alert below {sig3(level / ratio)}")
    return legend


def _reliability(box: Box, metrics: ClassificationMetrics | None) -> None:
    box.line([0, 1], [0, 1], color=MUTED, lw=0.8, ls=(0, (3, 3)))
    if metrics is None or not metrics.reliability:
        box.ax.text(box.x0 + box.width / 2, box.y0 + box.height / 2, "no batch with\nenough labels",
                    ha="center", va="center", fontsize=8, color=MUTED)  # fmt: skip
        return
    bins = metrics.reliability
    box.line([b.mean_probability for b in bins], [b.observed_ratio for b in bins], color=GREEN,
             lw=1.3, marker="o", ms=4)  # fmt: skip


def classifier_performance_picture(
    result: MonitoringResult, thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS
) -> bytes | None:
    """The window of accuracy and ROC AUC, and the reliability diagram; None with no batch."""
    if not result.performance:
        return None
    first = result.performance[0].batch_date
    last_day = (result.batch_date - first).days
    xlim = (-0.6, last_day + 0.6)
    values: list[float] = []
    for p in result.performance:
        if isinstance(p.metrics, ClassificationMetrics):
            values += [p.metrics.accuracy, p.metrics.roc_auc]
    ratio = thresholds.performance_alert_ratio
    baseline = result.baseline
    if isinstance(baseline, ClassifierHoldoutMetrics):
        values += [baseline.accuracy / ratio, baseline.roc_auc / ratio]
    finite = [v for v in values if math.isfinite(v)]
    ylim = (max(min(finite, default=0.0) - 0.05, 0.0), 1.0)
    current = result.current_performance
    metrics = current.metrics if current is not None else None
    width, height = 990, 300
    with DRAWING:
        fig = figure(width, height)
        ax = canvas(fig)
        window = Box(ax, (70, 60, 600, height - 110), xlim, ylim)
        window.frame(grid_y=[ylim[0] + (ylim[1] - ylim[0]) * t for t in (0.25, 0.5, 0.75)])
        window.ylabels([ylim[0], ylim[1]], [sig3(ylim[0]), "1"])
        legend = _window(window, result, ratio, last_day)
        ax.text(70, height - 22, "accuracy (blue) and ROC AUC (orange) per batch; bars: the "
                "monitored batch's estimate band", fontsize=8.5, color=TEXT)  # fmt: skip
        for i, line in enumerate(legend):
            ax.text(70, 30 - 13 * i, line, fontsize=7.5, color=MUTED)
        diagram = Box(ax, (760, 60, height - 110, height - 110), (0.0, 1.0), (0.0, 1.0))
        diagram.frame(grid_y=(0.5,))
        diagram.xlabels([0.0, 0.5, 1.0], ["0", "0.5", "1"])
        diagram.ylabels([0.0, 0.5, 1.0], ["0", "0.5", "1"])
        _reliability(diagram, metrics if isinstance(metrics, ClassificationMetrics) else None)
        binary = isinstance(metrics, ClassificationMetrics) and len(metrics.per_class) == 2
        kind = "positive class" if binary else "predicted class"
        ax.text(700, height - 22, f"reliability, {kind}: chance vs observed",
                fontsize=8.5, color=TEXT)  # fmt: skip
        return svg_bytes(fig)

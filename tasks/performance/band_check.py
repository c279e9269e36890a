"""A labelled batch's realized MAE against the band estimated for it before its labels.

The estimate follows the inputs; a realized MAE outside its band means the error moved in a way
the inputs do not show: the sign of concept drift the estimate cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tasks.performance.estimate import PerformanceEstimate
from tasks.performance.window import BatchPerformance, RegressionMetrics


@dataclass(frozen=True)
class BandCheck:
    """The realized MAE of `batch_date` and the band its own night estimated."""

    batch_date: date
    realized_mae: float
    label_coverage_ratio: float
    estimated_mae: float
    mae_lower: float
    mae_upper: float
    is_outside_band: bool


def check_band(
    performance: BatchPerformance | None, estimate: PerformanceEstimate | None
) -> BandCheck | None:
    """The check of a batch's realized performance against its estimate; None when either is
    missing (no labelled batch yet, or no estimate was made for it)."""
    if performance is None or estimate is None:
        return None
    if not isinstance(performance.metrics, RegressionMetrics):  # unlabelled, or a classifier's
        return None
    realized = performance.metrics.mae
    return BandCheck(
        batch_date=performance.batch_date,
        realized_mae=realized,
        label_coverage_ratio=performance.label_coverage_ratio,
        estimated_mae=estimate.mae,
        mae_lower=estimate.mae_lower,
        mae_upper=estimate.mae_upper,
        is_outside_band=not estimate.mae_lower <= realized <= estimate.mae_upper,
    )

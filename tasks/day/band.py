"""The reported batch's realized MAE against the band estimated for it on its own night
(tasks/performance/band_check.py). That band is the estimate the window state remembers for the
batch's files (its own night's, or a backfill's), or else made again from the batch's rows by the
same estimator: the same numbers either way, so a day's result depends on the lake's inputs
only, never on which earlier nights have run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date

from core.errors import DriftlineError
from data_lake.lake import Lake
from model_registry.registry import ModelCard
from tasks.day.inputs import read_batch
from tasks.performance.band_check import check_band
from tasks.performance.estimate import LossEstimator, PerformanceEstimate, estimate_performance
from tasks.results.day import MonitoringResult


def batch_estimate(
    lake: Lake, card: ModelCard, estimator: LossEstimator | None, batch_date: date
) -> PerformanceEstimate | None:
    """The estimate the night of `batch_date` made: its batch, validated as that night did,
    through the version's estimator; None when the batch cannot be read or validated."""
    if estimator is None:
        return None
    try:
        batch = read_batch(lake, card, batch_date)
    except DriftlineError:
        return None  # its own night failed and said why; later nights have no band to check
    return estimate_performance(estimator, batch.table)


def with_band_check(
    result: MonitoringResult, estimate_of: Callable[[date], PerformanceEstimate | None]
) -> MonitoringResult:
    """`result` with its reported batch's realized MAE checked against that batch's band;
    `estimate_of` makes the band of an earlier batch."""
    performance = result.current_performance
    if performance is None:
        return result
    if performance.batch_date == result.batch_date:
        estimate = result.estimate
    else:
        estimate = estimate_of(performance.batch_date)
    return dataclasses.replace(result, band_check=check_band(performance, estimate))

"""The reported batch's realized MAE against the band estimated for it on its own night, whose
result in the lake holds that estimate (tasks/performance/band_check.py)."""

from __future__ import annotations

import dataclasses
from datetime import date

from core.errors import InputError
from data_lake.lake import Lake
from tasks.performance.band_check import check_band
from tasks.performance.estimate import PerformanceEstimate
from tasks.results.day import MonitoringResult, from_json


def stored_estimate(lake: Lake, model: str, batch_date: date) -> PerformanceEstimate | None:
    """The estimate the result of `batch_date` holds; None without a readable result."""
    payload = lake.read_bytes(lake.result_path(model, batch_date))
    if payload is None:
        return None
    try:
        return from_json(payload).estimate
    except (InputError, ValueError, KeyError, TypeError):
        return None  # a damaged earlier result is no reason to fail today: nothing to check


def with_band_check(lake: Lake, result: MonitoringResult) -> MonitoringResult:
    """`result` with its reported batch's realized MAE checked against that batch's band."""
    performance = result.current_performance
    if performance is None:
        return result
    if performance.batch_date == result.batch_date:
        estimate = result.estimate
    else:
        estimate = stored_estimate(lake, result.model, performance.batch_date)
    return dataclasses.replace(result, band_check=check_band(performance, estimate))

"""Sustained drift: a feature may alert when it drifted on at least `days` of the last `of`
batch days (the policy's `drift_persistence`), today's included; the one-day verdict stays in
each feature's `is_drifted`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import date, timedelta

from core.errors import InputError
from core.policy import Persistence
from data_lake.lake import Lake
from tasks.results.day import MonitoringResult, from_json


def earlier_days(batch_date: date, persistence: Persistence) -> list[date]:
    """The batch days before `batch_date` whose verdicts count, newest first."""
    return [batch_date - timedelta(days=k) for k in range(1, persistence.of)]


def sustain(
    result: MonitoringResult,
    persistence: Persistence,
    earlier: Mapping[date, Collection[str]],
) -> MonitoringResult:
    """`result` with the features that may alert: not muted, and drifted on at least
    `persistence.days` of the last `persistence.of` days. `earlier` holds the features that
    drifted (and were not muted) on earlier days; a day missing from it counts as none."""
    days = [result.batch_date, *earlier_days(result.batch_date, persistence)]
    verdicts = {result.batch_date: set(result.drifted_features)}
    alerting = tuple(
        f.feature
        for f in result.features
        if not f.muted
        and sum(f.feature in verdicts.get(d, earlier.get(d, ())) for d in days) >= persistence.days
    )
    return dataclasses.replace(result, alerting_features=alerting)


def stored_verdicts(lake: Lake, model: str, days: Collection[date]) -> dict[date, frozenset[str]]:
    """The features that drifted on `days`, as the lake's results of those days say; a day
    without a readable result counts as none."""
    found: dict[date, frozenset[str]] = {}
    for day in sorted(days):
        payload = lake.read_bytes(lake.result_path(model, day))
        if payload is None:
            continue
        try:
            found[day] = frozenset(from_json(payload).drifted_features)
        except (InputError, ValueError, KeyError, TypeError):
            continue  # a damaged earlier result is no reason to fail today: it counts as none
    return found

"""A real year monitored as a new user would: 2013's New York departures, day by day.

    .venv/bin/python scripts/real_year.py [--end 2013-12-31] [--out DIR]

scripts/flights_year.py writes the year through the Python API (a model trained on January
and February, daily batches, labels two days late, planted shifts and two bad days) and runs
its nights by the nightly engine. This prints what an operator would check as JSON
(`Figures`), then a shift of 0.3 sd planted on every quiet night in turn through the nightly
drift step (`Sweep`). docs/measurements.md, "A real year", holds its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from core.settings import Settings
from data_lake.columns import BATCH_DATE
from data_lake.lake import Lake
from model_registry.registry import Registry
from scripts.flights_year import (
    BAD_DAYS,
    MODEL,
    PLANTED,
    SHIFT_SD,
    TRAINING_END,
    Night,
    Year,
    explained_by_shift,
    flights,
    is_held_out,
    monitor,
    register,
    settings_for,
    unseen,
    write_year,
)
from tasks.day.inputs import load_model_context
from tasks.performance.estimate import BAND_Z, EXTRA_KEY
from tasks.results.day import MonitoringResult
from tasks.stats.batch_drift import drift_report


@dataclass(frozen=True)
class Figures:
    """What an operator checks, over the nights monitored."""

    nights: int
    alert_nights: int  # nights with a feature alerting (the policy's sustained drift)
    quiet_alert_nights: int  # of those, nights no planted shift explains
    quiet_nights: int
    shifts_caught_on_night: tuple[tuple[str, str, int | None], ...]  # (day, feature, night)
    band_days: int  # held-out and monitored days with an estimate and a realized MAE
    band_covered: int
    band_covered_held_out: tuple[int, int]  # (covered, days) on the held-out training days
    # the same days' bands without the between-day term, as they were before it
    band_covered_without_day_error: int
    band_covered_held_out_without_day_error: int
    failed: tuple[tuple[str, str], ...]  # (day, reason), the bad days' own included
    unmatched_labels_max: int
    by_month: tuple[dict[str, Any], ...]

    @property
    def quiet_alert_share(self) -> float:
        return self.quiet_alert_nights / self.quiet_nights if self.quiet_nights else 0.0

    @property
    def band_coverage(self) -> float:
        return self.band_covered / self.band_days if self.band_days else 0.0


def _covered(result: MonitoringResult, realized: float, *, day_error: float = 0.0) -> bool | None:
    """Whether the night's band holds the realized MAE; with `day_error`, the band without
    that between-day term (estimate.py's band, the term taken back out)."""
    estimate = result.estimate
    if estimate is None or not np.isfinite(realized):
        return None
    if not day_error:
        return bool(estimate.mae_lower <= realized <= estimate.mae_upper)
    variance = estimate.mae_standard_error**2 - (day_error * estimate.mae) ** 2
    half = BAND_Z * math.sqrt(max(variance, 0.0))
    return bool(max(estimate.mae - half, 0.0) <= realized <= estimate.mae + half)


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def figures(year: Year, nights: Sequence[Night], *, day_error: float = 0.0) -> Figures:
    """The figures of the nights; `day_error` is the registered estimator's, taken back out
    of each band to compare with the band before the between-day term."""
    ran = [n for n in nights if n.result is not None]
    monitored = [n for n in ran if n.day > TRAINING_END]
    quiet = [n for n in monitored if not explained_by_shift(n.day)]
    alerting = [n for n in monitored if n.result is not None and n.result.alerting]
    caught = []
    by_day = {n.day: n.result for n in ran if n.result is not None}
    for first, days, feature in PLANTED:
        night = None
        for k in range(days):
            result = by_day.get(first + timedelta(days=k))
            if result is not None and any(
                f.feature == feature and f.is_drifted for f in result.features
            ):
                night = k + 1
                break
        if first in year.realized_mae:
            caught.append((first.isoformat(), feature, night))
    # the days the model, its reference and the estimator never saw
    coverage = {
        n.day: _covered(n.result, year.realized_mae[n.day])
        for n in ran
        if n.result and unseen(n.day)
    }
    held = [c for d, c in coverage.items() if is_held_out(d) and c is not None]
    without = {
        d: _covered(by_day[d], year.realized_mae[d], day_error=day_error)
        for d, c in coverage.items()
        if c is not None
    }
    checks: dict[int, list[bool]] = {}
    for n in ran:
        check = n.result.band_check if n.result else None
        if check is not None and unseen(check.batch_date):
            checks.setdefault(check.batch_date.month, []).append(check.is_outside_band)
    months = []
    for month in sorted({d.month for d in year.days}):
        in_month = [n for n in ran if n.day.month == month and unseen(n.day)]
        if not in_month:
            continue
        cov = [c for n in in_month if (c := coverage[n.day]) is not None]
        estimates = [n.result.estimate.mae for n in in_month if n.result and n.result.estimate]
        months.append(
            {
                "month": month,
                "nights": len(in_month),
                "alert_share": round(
                    sum(bool(n.result and n.result.alerting) for n in in_month) / len(in_month), 3
                ),
                "estimated_mae": round(float(np.mean(estimates)), 2) if estimates else None,
                "realized_mae": round(
                    float(np.mean([year.realized_mae[n.day] for n in in_month])), 2
                ),
                "band_coverage": _share(cov),
                "band_coverage_without_day_error": _share(
                    [c for n in in_month if (c := without.get(n.day)) is not None]
                ),
                # the nights' own verdicts: a labelled batch of the month outside its band
                "outside_band_share": _share(checks.get(month, [])),
            }
        )
    return Figures(
        nights=len(monitored),
        alert_nights=len(alerting),
        quiet_alert_nights=sum(bool(n.result and n.result.alerting) for n in quiet),
        quiet_nights=len(quiet),
        shifts_caught_on_night=tuple(caught),
        band_days=sum(c is not None for c in coverage.values()),
        band_covered=sum(bool(c) for c in coverage.values()),
        band_covered_held_out=(sum(held), len(held)),
        band_covered_without_day_error=sum(bool(c) for c in without.values()),
        band_covered_held_out_without_day_error=sum(
            bool(c) for d, c in without.items() if is_held_out(d)
        ),
        failed=tuple((n.day.isoformat(), n.error or "") for n in nights if n.result is None),
        unmatched_labels_max=max((n.result.unmatched_labels for n in ran if n.result), default=0),
        by_month=tuple(months),
    )


@dataclass(frozen=True)
class Sweep:
    """A shift of SHIFT_SD standard deviations planted in one feature on every quiet night in
    turn, up and down, through the nightly drift step: how often that night's one-day verdict
    is drifted, and how often that night's or the next one's."""

    feature: str
    sign: int
    nights: int
    caught_same_night: int
    caught_within_two: int  # of the nights whose next night was quiet too
    pairs: int
    smallest_score: float


def sweep(table: pd.DataFrame, days: Sequence[date], settings: Settings) -> list[Sweep]:
    """`Sweep` of each shifted feature on `days` of the lake's batches, as written."""
    lake = Lake.open(settings.data_lake_uri)
    context = load_model_context(Registry.open(settings.model_registry_uri), MODEL)
    policy, rule = context.policy, context.policy.drift_rule(settings.drift_rule)
    quiet = [d for d in days if d > TRAINING_END and not explained_by_shift(d, 1)]
    batches = {d: lake.read_scored(MODEL, d) for d in quiet if d not in BAD_DAYS}
    found = []
    for feature in ("distance", "sched_hour"):
        step = SHIFT_SD * float(table[feature].std())
        for sign in (1, -1):
            verdicts, scores = {}, []
            for day, batch in batches.items():
                index = batch.column_names.index(feature)
                shifted = batch.set_column(index, feature, pc.add(batch[feature], sign * step))
                outcome = drift_report(
                    context.profile,
                    shifted,
                    rule,
                    rules=policy.feature_rules(settings.drift_rule),
                    exclude=policy.exclude_features,
                    mute=policy.mute_features,
                )
                drift = next(f for f in outcome.features if f.feature == feature)
                verdicts[day] = drift.is_drifted
                scores.append(drift.score)
            pairs = [
                (d, d + timedelta(days=1)) for d in verdicts if d + timedelta(days=1) in verdicts
            ]
            found.append(
                Sweep(
                    feature=feature,
                    sign=sign,
                    nights=len(verdicts),
                    caught_same_night=sum(verdicts.values()),
                    caught_within_two=sum(verdicts[a] or verdicts[b] for a, b in pairs),
                    pairs=len(pairs),
                    smallest_score=round(min(scores), 4),
                )
            )
    return found


def run(end: date, root: Path, *, every_night: bool = True) -> tuple[Year, list[Night], Figures]:
    """Register, write the days from the first of the year to `end`, monitor them (or, unless
    `every_night`, only the days the model and its reference never saw)."""
    settings = settings_for(root)
    table = flights()
    model = register(table, registry=settings.model_registry_uri)
    days = [d for d in sorted(set(table[BATCH_DATE])) if d <= end]
    year = write_year(
        table, model, days, lake=settings.data_lake_uri, registry=settings.model_registry_uri
    )
    nights = monitor([d for d in days if every_night or unseen(d)], settings)
    card = Registry.open(settings.model_registry_uri).card(MODEL)
    day_error = card.extra[EXTRA_KEY]["accuracy"]["day_error"]
    return year, nights, figures(year, nights, day_error=day_error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end", type=date.fromisoformat, default=date(2013, 12, 31))
    parser.add_argument("--out", type=Path, help="keep the lake and registry here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        year, _, found = run(args.end, root)
        swept = sweep(flights(), year.days, settings_for(root))
    print(json.dumps(dataclasses.asdict(found), indent=1, default=str))
    print(json.dumps([dataclasses.asdict(s) for s in swept], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

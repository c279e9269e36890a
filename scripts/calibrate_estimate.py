"""Calibrate the estimated MAE: how far it lands from the MAE realized once every label is in.

    .venv/bin/python scripts/calibrate_estimate.py [--train-seeds 3] [--runs 10] [--days 10]
    .venv/bin/python scripts/calibrate_estimate.py --timing

Each training seed trains and registers the diamonds model with `driftline.commands.train` into
a temporary registry (which fits its loss estimator) and draws the simulated days from the
reference rows the loss estimator was *not* fitted on
(`tasks.performance.estimate.split_reference`), so
neither the model nor the estimator has seen a simulated row. Each run simulates `--days` days of
2,000 rows with `driftline.commands.simulate` into a temporary lake, the scenario starting at
the middle day, and runs `tasks.day.engine.run_day` for every day, as the nightly run does on
the morning after. The realized MAE of a day is its batch's MAE once all labels have arrived
(the performance window a week after the last day, `tasks.day.inputs.read_window`).

Per scenario (none, data-drift, concept-drift) and phase (before / after the drift start) it
prints how often the estimate is within 15 % of the realized MAE, how often the band covers it,
and whether the rise in MAE shows in the estimate the morning after the first drifted batch
(its band's lower end above the mean estimate of the days before; and whether the lower end is
above 1.2 x the baseline, MLEstimatedPerformanceDegraded's condition). Last, one line of JSON.

`--timing` times the estimate step on batches of 1,000 and 1,000,000 rows drawn from the
reference, and the cost of loading the estimator (the hash check and unpickling, sklearn's import
in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.settings import Settings, load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.registry import HoldoutMetrics, Registry
from tasks.day import engine, inputs
from tasks.edge.estimator_file import load_loss_estimator
from tasks.models.simulate import SCENARIOS, Scenario
from tasks.performance.estimate import (
    BAND_Z,
    MAX_SAMPLE_ROWS,
    estimate_performance,
    split_reference,
)
from tasks.performance.window import RegressionMetrics

MODEL = "calibration"
MULTIPLIERS = (1.64, 1.96, 2.24, 2.58)  # the band's z, measured: 90, 95, 97.5, 99 % nominal
START = date(2026, 1, 1)
ROWS_PER_DAY = 2_000
TOLERANCE = 0.15
CALIBRATED: tuple[Scenario, ...] = ("none", "data-drift", "concept-drift")


@dataclass(frozen=True)
class Day:
    scenario: str
    train_seed: int
    run: int
    offset: int
    drifting: bool
    estimated: float
    lower: float
    upper: float
    realized: float  # all labels in
    baseline: float  # the card's holdout MAE

    @property
    def relative_error(self) -> float:
        return (self.estimated - self.realized) / self.realized

    @property
    def covered(self) -> bool:
        return self.lower <= self.realized <= self.upper

    @property
    def alert_fires(self) -> bool:
        """MLEstimatedPerformanceDegraded's condition on this day's push."""
        return self.lower > 1.2 * self.baseline

    def covered_at(self, z: float) -> bool:
        """Whether a band of `z` standard errors would cover the realized MAE."""
        standard_error = (self.upper - self.estimated) / BAND_Z
        return abs(self.realized - self.estimated) <= z * standard_error


def _settings(root: Path, lake: str = "lake") -> Settings:
    return load_settings(
        {"MODEL_REGISTRY_URI": str(root / "registry"), "DATA_LAKE_URI": str(root / lake)}
    )


def held_out_pool(registry: Registry, path: Path) -> Path:
    """The reference rows the loss estimator was not fitted on, as a simulation pool."""
    card = registry.card(MODEL)
    reference = registry.load_reference(card)
    _, holdout = split_reference(reference, card.target)
    pq.write_table(reference.take(pa.array(holdout)), path)
    return path


def run_days(
    root: Path,
    context: inputs.ModelContext,
    pool: Path,
    scenario: Scenario,
    seed: int,
    days: int,
) -> list[tuple[int, bool, Any, float]]:
    """Simulate and monitor `days` days; each day's estimate and its MAE with every label in."""
    settings = _settings(root, f"lake-{scenario}-{seed}")
    drift_start = START + timedelta(days=days // 2)
    commands.simulate(
        settings, model=MODEL, start=START, days=days, rows_per_day=ROWS_PER_DAY,
        scenario=scenario, seed=seed, drift_start=drift_start, pool=pool,
    )  # fmt: skip
    lake = Lake.open(settings.data_lake_uri)
    last = START + timedelta(days=days - 1)
    later = last + timedelta(days=8)  # every label has arrived by then (delays are 1-7 days)
    window = inputs.read_window(
        lake, context.card, later, later, window_days=settings.performance_window_days
    )
    realized = {
        p.batch_date: p.metrics.mae
        for p in window.performance(later).batches
        if isinstance(p.metrics, RegressionMetrics)
    }
    out = []
    for offset in range(days):
        day = START + timedelta(days=offset)
        result = engine.run_day(lake, context, day, settings).result
        out.append((offset, day >= drift_start, result.estimate, realized[day]))
    return out


def collect(train_seeds: int, runs: int, days: int) -> tuple[list[Day], dict[str, Any]]:
    found: list[Day] = []
    estimators: dict[str, Any] = {}
    for train_seed in range(train_seeds):
        with tempfile.TemporaryDirectory(prefix="driftline-calibrate-estimate-") as tmp:
            root = Path(tmp)
            card = commands.train(_settings(root), model=MODEL, seed=42 + train_seed)
            estimators[f"train_seed_{42 + train_seed}"] = card.extra["loss_estimator"]["accuracy"]
            registry = Registry.open(str(root / "registry"))
            pool = held_out_pool(registry, root / "pool.parquet")
            context = inputs.load_model_context(registry, MODEL)
            assert isinstance(card.metrics, HoldoutMetrics)  # the diamonds regressor
            baseline = card.metrics.mae
            for index, scenario in enumerate(CALIBRATED):
                for run in range(runs):
                    seed = 10_000 * train_seed + 100 * index + run  # independent days throughout
                    for offset, drifting, estimate, realized in run_days(
                        root, context, pool, scenario, seed, days
                    ):
                        found.append(
                            Day(scenario, train_seed, run, offset, drifting, estimate.mae,
                                estimate.mae_lower, estimate.mae_upper, realized, baseline)
                        )  # fmt: skip
                print(f"train seed {42 + train_seed}: {scenario} done", file=sys.stderr, flush=True)
    return found, estimators


def _share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else float("nan")


@dataclass(frozen=True)
class Rise:
    """The morning after a run's first drifted batch, against the run's days before."""

    scenario: str
    estimated_rise: float
    realized_rise: float
    shows: bool  # the band's lower end is above the mean estimate of the days before
    alert_fires: bool  # MLEstimatedPerformanceDegraded: the lower end above 1.2 x baseline


def _runs(days: list[Day]) -> list[tuple[str, tuple[int, int]]]:
    found = {(d.scenario, (d.train_seed, d.run)) for d in days if d.scenario != "none"}
    return sorted(found)


def _first_drifted_morning(days: list[Day], scenario: str, key: tuple[int, int]) -> Rise:
    run = sorted(
        (d for d in days if d.scenario == scenario and (d.train_seed, d.run) == key),
        key=lambda d: d.offset,
    )
    before = [d for d in run if not d.drifting]
    first = next(d for d in run if d.drifting)
    base_estimate = statistics.mean(d.estimated for d in before)
    base_realized = statistics.mean(d.realized for d in before)
    return Rise(
        scenario,
        estimated_rise=first.estimated / base_estimate - 1,
        realized_rise=first.realized / base_realized - 1,
        shows=first.lower > base_estimate,
        alert_fires=first.alert_fires,
    )


def summarise(days: list[Day]) -> dict[str, Any]:
    groups: dict[str, list[Day]] = {}
    for d in days:
        phase = "drifting" if d.drifting and d.scenario != "none" else "before drift"
        if d.scenario == "none":
            phase = "all days"
        groups.setdefault(f"{d.scenario}, {phase}", []).append(d)
    table = {}
    for name, group in groups.items():
        errors = [abs(d.relative_error) for d in group]
        table[name] = {
            "days": len(group),
            "within_15_percent": _share([e <= TOLERANCE for e in errors]),
            "band_covers": _share([d.covered for d in group]),
            "band_covers_at_z": {
                str(z): _share([d.covered_at(z) for d in group]) for z in MULTIPLIERS
            },
            "median_abs_relative_error": round(statistics.median(errors), 4),
            "p90_abs_relative_error": round(float(np.quantile(errors, 0.9)), 4),
            "mean_estimated_mae": round(statistics.mean(d.estimated for d in group), 1),
            "mean_realized_mae": round(statistics.mean(d.realized for d in group), 1),
        }
    bar = [d for d in days if d.scenario in ("none", "data-drift")]
    rises = [_first_drifted_morning(days, scenario, key) for scenario, key in _runs(days)]
    rise_summary = {
        scenario: {
            "runs": len(rs),
            "rise_shows_next_morning": _share([r.shows for r in rs]),
            "alert_fires_next_morning": _share([r.alert_fires for r in rs]),
            "mean_estimated_rise": round(statistics.mean(r.estimated_rise for r in rs), 4),
            "mean_realized_rise": round(statistics.mean(r.realized_rise for r in rs), 4),
        }
        for scenario in ("data-drift", "concept-drift")
        if (rs := [r for r in rises if r.scenario == scenario])
    }
    quiet = [d for d in days if not d.drifting or d.scenario == "none"]
    return {
        "by_scenario": table,
        "bar_no_drift_and_data_drift": {
            "days": len(bar),
            "within_15_percent": _share([abs(d.relative_error) <= TOLERANCE for d in bar]),
            "band_covers": _share([d.covered for d in bar]),
            "band_covers_at_z": {
                str(z): _share([d.covered_at(z) for d in bar]) for z in MULTIPLIERS
            },
        },
        "first_drifted_morning": rise_summary,
        "alert_on_days_without_drift": _share([d.alert_fires for d in quiet]),
    }


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'scenario, phase':<32} {'days':>5} {'within 15%':>10} {'band covers':>11} "
          f"{'median |err|':>12} {'p90 |err|':>9} {'est MAE':>8} {'real MAE':>8}")  # fmt: skip
    for name, row in summary["by_scenario"].items():
        print(
            f"{name:<32} {row['days']:>5} {row['within_15_percent']:>10.1%} "
            f"{row['band_covers']:>11.1%} {row['median_abs_relative_error']:>12.1%} "
            f"{row['p90_abs_relative_error']:>9.1%} {row['mean_estimated_mae']:>8.1f} "
            f"{row['mean_realized_mae']:>8.1f}"
        )
    print("band coverage by its multiplier z:")
    for name, row in summary["by_scenario"].items():
        shares = ", ".join(f"z {z}: {share:.1%}" for z, share in row["band_covers_at_z"].items())
        print(f"  {name:<30} {shares}")
    bar = summary["bar_no_drift_and_data_drift"]
    print(
        f"bar (no drift and data drift, {bar['days']} days): within 15% on "
        f"{bar['within_15_percent']:.1%}, band covers {bar['band_covers']:.1%}"
    )
    for scenario, row in summary["first_drifted_morning"].items():
        print(
            f"{scenario}, morning after the first drifted batch ({row['runs']} runs): estimate "
            f"rose {row['mean_estimated_rise']:+.1%} (realized {row['mean_realized_rise']:+.1%}); "
            f"its band's lower end above the days before in {row['rise_shows_next_morning']:.0%}, "
            f"the alert's condition met in {row['alert_fires_next_morning']:.0%}"
        )
    print(
        "MLEstimatedPerformanceDegraded's condition on days without drift: "
        f"{summary['alert_on_days_without_drift']:.1%}"
    )


# timing --------------------------------------------------------------------------------------
def _median_seconds(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timing(repeats: int) -> dict[str, Any]:
    """The estimate step at 1k and 1M rows, and loading the estimator."""
    with tempfile.TemporaryDirectory(prefix="driftline-time-estimate-") as tmp:
        root = Path(tmp)
        commands.train(_settings(root), model=MODEL)
        registry = Registry.open(str(root / "registry"))
        card = registry.card(MODEL)
        estimator = load_loss_estimator(registry, card)
        reference = registry.load_reference(card).select([*card.feature_names, "prediction"])
        rng = np.random.default_rng(0)
        figures: dict[str, Any] = {
            "load_seconds": round(
                _median_seconds(lambda: load_loss_estimator(registry, card), repeats), 4
            )
        }
        for rows in (1_000, 1_000_000):
            batch = reference.take(pa.array(rng.integers(0, reference.num_rows, rows)))
            seconds = _median_seconds(lambda b=batch: estimate_performance(estimator, b), repeats)
            figures[f"estimate_seconds_{rows}"] = round(seconds, 4)
        cold = subprocess.run(
            [sys.executable, "-c", _COLD_LOAD, str(root / "registry"), MODEL],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures.update(json.loads(cold.stdout))
    figures.update(features=len(card.features), max_sample_rows=MAX_SAMPLE_ROWS, repeats=repeats)
    return figures


# a fresh interpreter that has imported what a nightly run imports before it loads the estimator
_COLD_LOAD = """
import json, sys, time
import flows.monitor, tasks.day.engine
from model_registry.registry import Registry
from tasks.edge.estimator_file import load_loss_estimator
registry = Registry.open(sys.argv[1])
card = registry.card(sys.argv[2])
started = time.perf_counter()
load_loss_estimator(registry, card)
print(json.dumps({"cold_load_seconds": round(time.perf_counter() - started, 4)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seeds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="seeded runs per scenario and seed")
    parser.add_argument("--days", type=int, default=10, help="days per run, drift from the middle")
    parser.add_argument("--timing", action="store_true", help="time the estimate step instead")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.timing:
        print(json.dumps(timing(args.repeats)))
        return
    assert set(CALIBRATED) <= set(SCENARIOS)
    days, estimators = collect(args.train_seeds, args.runs, args.days)
    summary = summarise(days)
    print(
        f"{args.train_seeds} training seed(s) x {args.runs} runs x {args.days} days of "
        f"{ROWS_PER_DAY} rows per scenario; band = estimate -/+ {BAND_Z} standard errors; "
        f"drift from day {args.days // 2 + 1}"
    )
    print_table(summary)
    print(
        json.dumps(
            {
                "train_seeds": args.train_seeds,
                "runs": args.runs,
                "days": args.days,
                "rows_per_day": ROWS_PER_DAY,
                "band_z": BAND_Z,
                "estimators_on_held_out_rows": estimators,
                **summary,
            }
        )
    )


if __name__ == "__main__":
    main()

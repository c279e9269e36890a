"""The data-quality fault suite: a year of clean daily batches, eight faults each on its own day.

    .venv/bin/python scripts/quality_suite.py               # 365 days, prints a table and JSON
    .venv/bin/python scripts/quality_suite.py --days 120    # shorter (faults spread over it)
    .venv/bin/python scripts/quality_suite.py --hard        # the same eight, harder to see
    .venv/bin/python scripts/quality_suite.py --write DIR   # the days as Parquet, for other tools

A realistic generator: five numeric features (a skewed area, integer rooms, a year, a distance
with 2% missing, a seasonal temperature) and three categorical ones (a city with a long tail,
an energy label with 5% missing, a kind), a prediction from them, `scored_at` spread over the
day, and row counts with a weekday pattern (weekend low), a slow trend and day-to-day noise. The
reference is 20,000 rows drawn over the year before. Each day goes through the engine's own
steps in memory: `validate_batch`, `drift_report`, then the day's quality step
(`tasks.day.quality.quality_of`) with the row counts of the earlier batches of its 30-day
window. A fault is caught when its day has a finding, named when a finding has the fault's
feature and check; a clean day with any finding is a false alarm.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.policy import Policy
from core.settings import DriftRule
from model_registry.registry import FeatureSpec, HoldoutMetrics, ModelCard
from tasks.day.quality import quality_of
from tasks.edge.validation import validate_batch
from tasks.performance.window import BatchPerformance, PerformanceOutcome
from tasks.quality.checks import BATCH, Finding
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import build_profile

START = date(2026, 1, 1)
CITIES = np.array(["Amsterdam", "Rotterdam", "The Hague", "Eindhoven", "Groningen", "Tilburg"])
CITY_SHARES = np.array([0.34, 0.22, 0.18, 0.12, 0.09, 0.05])
LABELS = np.array(["A", "B", "C", "D", "E", "F", "G"])
LABEL_SHARES = np.array([0.18, 0.22, 0.24, 0.16, 0.1, 0.06, 0.04])
KINDS = np.array(["flat", "house", "studio"])
KIND_SHARES = np.array([0.55, 0.35, 0.1])
WEEKDAY_VOLUME = np.array([1.0, 1.05, 1.0, 1.1, 1.2, 0.55, 0.45])  # Monday first
BASE_ROWS = 3000
WINDOW_DAYS = 30

CARD = ModelCard(
    name="homes",
    version="1",
    created_at="2026-01-01T00:00:00+00:00",
    target="price",
    features=(
        *(
            FeatureSpec(n, "numeric")
            for n in ("area_m2", "rooms", "year_built", "distance_km", "temperature_c")
        ),
        FeatureSpec("city", "categorical", tuple(CITIES)),
        FeatureSpec("energy_label", "categorical", tuple(LABELS)),
        FeatureSpec("kind", "categorical", tuple(KINDS)),
    ),
    metrics=HoldoutMetrics(mae=1.0, rmse=1.0, mape=0.1, r2=0.9),
    sha256={},
    libraries={},
)


def rows(n: int, rng: np.random.Generator, *, day: date, first_id: int = 0) -> pa.Table:
    """`n` clean rows of `day`: the season moves the temperature, nothing else drifts."""
    season = math.sin(2 * math.pi * (day.timetuple().tm_yday - 100) / 365)
    area = rng.lognormal(4.4, 0.35, n)
    distance = rng.exponential(6.0, n)
    label = LABELS[rng.choice(LABELS.size, n, p=LABEL_SHARES)]
    start = datetime.combine(day, datetime.min.time(), UTC).timestamp()
    columns = {
        "row_id": pa.array([f"{day}-{first_id + i}" for i in range(n)]),
        "scored_at": pa.array(
            ((start + np.sort(rng.uniform(0, 86_400, n))) * 1e6).astype(np.int64)
        ).cast(pa.timestamp("us", tz="UTC")),
        "area_m2": area,
        "rooms": np.clip(np.round(area / 25 + rng.normal(0, 0.7, n)), 1, 9),
        "year_built": rng.integers(1900, 2024, n).astype(np.float64),
        "distance_km": pa.array(distance, mask=rng.random(n) < 0.02),
        "temperature_c": rng.normal(11 + 7 * season, 5.0, n),
        "city": CITIES[rng.choice(CITIES.size, n, p=CITY_SHARES)],
        "energy_label": pa.array(label, mask=rng.random(n) < 0.05),
        "kind": KINDS[rng.choice(KINDS.size, n, p=KIND_SHARES)],
    }
    columns["prediction"] = 3000 * area * np.exp(-distance / 40) + rng.normal(0, 2e4, n)
    return pa.table(columns)


def volume(day: date, rng: np.random.Generator) -> int:
    """The day's row count: weekday pattern, +30% over a year, 5% noise."""
    trend = 1 + 0.3 * (day - START).days / 365
    return int(BASE_ROWS * WEEKDAY_VOLUME[day.weekday()] * trend * rng.lognormal(0, 0.05))


def reference(rng: np.random.Generator, n: int = 20_000) -> pa.Table:
    days = [START - timedelta(days=int(d)) for d in rng.integers(1, 366, 20)]
    return pa.concat_tables(
        [rows(n // len(days), rng, day=d, first_id=i * n) for i, d in enumerate(days)]
    )


# --- the faults --------------------------------------------------------------------------------
def _set(table: pa.Table, name: str, column: pa.Array | np.ndarray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(column))


def unit_change(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """distance in metres instead of kilometres."""
    return _set(t, "distance_km", pc.multiply(t["distance_km"], 1000).combine_chunks())


def null_burst(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """A third of the areas lost."""
    area = t["area_m2"].to_numpy()
    return _set(t, "area_m2", pa.array(area, mask=rng.random(area.size) < 0.35))


def new_category(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """A city the model never saw, in 6% of the rows."""
    city = np.array(t["city"].to_pylist(), dtype=object)
    city[rng.random(city.size) < 0.06] = "Utrecht"
    return _set(t, "city", city.astype(str))


def duplicated_extract(
    t: pa.Table, rng: np.random.Generator, share: float = 0.2, *, fresh_ids: bool = False
) -> pa.Table:
    """A fifth of the rows extracted twice: copied whole, or given fresh row ids on the second
    pass."""
    again = t.take(np.flatnonzero(rng.random(t.num_rows) < share))
    if fresh_ids:
        again = _set(again, "row_id", pa.array([f"{i}-again" for i in again["row_id"].to_pylist()]))
    return pa.concat_tables([t, again])


def swapped_columns(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """area_m2 and year_built written into each other's column."""
    area, year = t["area_m2"], t["year_built"]
    return _set(_set(t, "area_m2", year.combine_chunks()), "year_built", area.combine_chunks())


def constant_column(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The temperature feed down: a default 0.0 on every row."""
    return _set(t, "temperature_c", np.zeros(t.num_rows))


def truncated_batch(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Only the first 30% of the day's rows arrived."""
    return t.slice(0, int(t.num_rows * 0.3))


def case_change(t: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The city written in capitals by a new upstream version."""
    return _set(t, "city", pc.utf8_upper(t["city"]).combine_chunks())


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[pa.Table, np.random.Generator], pa.Table]
    feature: str
    check: str


FAULTS = (
    Fault("unit change", unit_change, "distance_km", "scaled_column"),
    Fault("null burst", null_burst, "area_m2", "null_burst"),
    Fault("new category", new_category, "city", "unseen_categories"),
    Fault("duplicated extract", duplicated_extract, BATCH, "duplicated_rows"),
    Fault("swapped columns", swapped_columns, "area_m2", "swapped_columns"),
    Fault("constant column", constant_column, "temperature_c", "constant_column"),
    Fault("truncated batch", truncated_batch, BATCH, "row_count"),
    Fault("category case change", case_change, "city", "category_case_changed"),
)


@dataclass(frozen=True)
class DayOutcome:
    day: date
    fault: Fault | None
    findings: tuple[Finding, ...]

    @property
    def named(self) -> bool:
        f = self.fault
        return f is not None and any(
            (x.feature, x.check) == (f.feature, f.check) for x in self.findings
        )


# --- the same eight, harder to see ------------------------------------------------------------
def _share(
    t: pa.Table, name: str, share: float, rng: np.random.Generator, to: Callable
) -> pa.Table:
    values = np.array(t[name].to_pylist(), dtype=object)
    chosen = rng.random(values.size) < share
    values[chosen] = [to(v) for v in values[chosen]]
    return _set(t, name, values.astype(str))


HARD_FAULTS = (
    Fault(
        "unit change: m2 as cm2",
        lambda t, rng: _set(t, "area_m2", pc.multiply(t["area_m2"], 10_000).combine_chunks()),
        "area_m2",
        "scaled_column",
    ),
    Fault(
        "null burst: 8%",
        lambda t, rng: _set(
            t, "area_m2", pa.array(t["area_m2"].to_numpy(), mask=rng.random(t.num_rows) < 0.08)
        ),
        "area_m2",
        "null_burst",
    ),
    Fault(
        "new category in 1%",
        lambda t, rng: _share(t, "city", 0.01, rng, lambda v: "Utrecht"),
        "city",
        "unseen_categories",
    ),
    Fault(
        "duplicated extract: 3%, fresh row ids",
        lambda t, rng: duplicated_extract(t, rng, share=0.03, fresh_ids=True),
        BATCH,
        "duplicated_rows",
    ),
    Fault(
        "rooms and distance swapped",
        lambda t, rng: _set(
            _set(t, "rooms", t["distance_km"].combine_chunks()),
            "distance_km",
            t["rooms"].combine_chunks(),
        ),
        "rooms",
        "swapped_columns",
    ),
    Fault(
        "constant category",
        lambda t, rng: _set(t, "kind", np.full(t.num_rows, "flat")),
        "kind",
        "constant_column",
    ),
    Fault(
        "truncated to 55%", lambda t, rng: t.slice(0, int(t.num_rows * 0.55)), BATCH, "row_count"
    ),
    Fault(
        "20% in lower case",
        lambda t, rng: _share(t, "city", 0.2, rng, str.lower),
        "city",
        "category_case_changed",
    ),
)


def fault_days(days: int, faults: tuple[Fault, ...] = FAULTS) -> dict[date, Fault]:
    """The faults spread over the run, the first after five weeks (the weekly pattern learned)."""
    first, step = 36, max(1, (days - 40) // len(faults))
    return {START + timedelta(days=first + i * step): f for i, f in enumerate(faults)}


def suite_days(
    days: int, rng: np.random.Generator, faults_used: tuple[Fault, ...] = FAULTS
) -> Iterator[tuple[date, pa.Table, Fault | None]]:
    """Each day's batch as written to the lake, a fault injected on its day."""
    faults = fault_days(days, faults_used)
    for offset in range(days):
        day = START + timedelta(days=offset)
        table = rows(volume(day, rng), rng, day=day)
        fault = faults.get(day)
        yield day, (table if fault is None else fault.inject(table, rng)), fault


def run_suite(days: int = 365, *, seed: int = 7, hard: bool = False) -> list[DayOutcome]:
    rng = np.random.default_rng(seed)
    profile = build_profile(reference(rng), CARD)
    history: dict[date, int] = {}
    outcomes = []
    for day, table, fault in suite_days(days, rng, HARD_FAULTS if hard else FAULTS):
        batch = validate_batch(table, CARD, source=f"batch {day}")
        drift = drift_report(profile, batch.table, DriftRule())
        history[day] = table.num_rows
        window = tuple(
            BatchPerformance(d, n, 0, 0.0, None)
            for d, n in sorted(history.items())
            if (day - d).days < WINDOW_DAYS
        )
        quality = quality_of(
            CARD, profile, Policy(), day, batch, drift, PerformanceOutcome(window, 0, ())
        )
        outcomes.append(DayOutcome(day, fault, quality.issues))
    return outcomes


def write_suite(directory: Path, days: int, *, seed: int = 7) -> None:
    """The same reference and days as Parquet files, and which fault each day holds, for
    other tools (scripts/quality_suite_others.py)."""
    rng = np.random.default_rng(seed)
    (directory / "days").mkdir(parents=True, exist_ok=True)
    pq.write_table(reference(rng), directory / "reference.parquet")
    faults = {}
    for day, table, fault in suite_days(days, rng):
        pq.write_table(table, directory / "days" / f"{day}.parquet")
        if fault is not None:
            faults[str(day)] = {"name": fault.name, "feature": fault.feature}
    (directory / "faults.json").write_text(json.dumps(faults, indent=1) + "\n")


def summary(outcomes: list[DayOutcome]) -> dict[str, object]:
    faulty = [o for o in outcomes if o.fault is not None]
    clean = [o for o in outcomes if o.fault is None]
    alarms = [o for o in clean if o.findings]
    return {
        "faults": {
            o.fault.name: {"day": str(o.day), "caught": bool(o.findings), "named": o.named}
            for o in faulty
            if o.fault is not None
        },
        "caught": sum(bool(o.findings) for o in faulty),
        "named": sum(o.named for o in faulty),
        "clean_days": len(clean),
        "false_alarm_days": len(alarms),
        "false_alarms": [
            f"{o.day}: " + "; ".join(f"{x.feature} {x.check} {x.value:.4g}" for x in o.findings)
            for o in alarms
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hard", action="store_true", help="the eight faults, harder to see")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write the days, run nothing")
    args = parser.parse_args()
    if args.write:
        write_suite(args.write, args.days, seed=args.seed)
        return
    outcomes = run_suite(args.days, seed=args.seed, hard=args.hard)
    for o in outcomes:
        if o.fault is not None:
            found = "; ".join(f"{x.feature} {x.check} ({x.detail})" for x in o.findings) or "-"
            print(f"{o.day} {o.fault.name:22} named={o.named!s:5} {found}")
    print(json.dumps(summary(outcomes)))


if __name__ == "__main__":
    main()

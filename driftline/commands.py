"""The commands that are not Prefect flows: train, register, simulate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError
from core.names import check_name
from core.settings import REPO_ROOT, Settings
from data_lake.lake import Lake
from model_registry.registry import ModelCard, Registry
from tasks.edge.estimator_file import loss_estimator_files
from tasks.edge.profile_file import profile_files
from tasks.models import simulate as sim
from tasks.models.training import PreparedModel, describe_features, prepare, train_random_forest

DIAMONDS = REPO_ROOT / "driftline" / "data" / "diamonds.parquet"
DIAMONDS_CATEGORICAL = ["cut", "color", "clarity"]


def _register(registry: Registry, model: str, prepared: PreparedModel) -> ModelCard:
    """Store the version with its reference profile and loss estimator, fitted once here for
    every nightly run."""
    reference = pq.read_table(pa.BufferReader(prepared.reference_bytes))
    estimator_files, extra = loss_estimator_files(reference, prepared)
    return registry.register(
        model=model,
        estimator_bytes=prepared.estimator_bytes,
        reference_bytes=prepared.reference_bytes,
        target=prepared.target,
        features=prepared.features,
        metrics=prepared.metrics,
        libraries=prepared.libraries,
        extra_files={**profile_files(reference, prepared), **estimator_files},
        extra=extra,
    )


def train(settings: Settings, *, model: str, seed: int = 42) -> ModelCard:
    """Fit the diamonds RandomForestRegressor pipeline and make it `production`."""
    check_name("model", model)
    table = pd.read_parquet(DIAMONDS)
    prepared = train_random_forest(
        table, target="price", categorical=DIAMONDS_CATEGORICAL, seed=seed
    )
    return _register(Registry.open(settings.model_registry_uri), model, prepared)


def _read_frame(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; pass the path of a Parquet file")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{what} {path}: not a readable Parquet file ({exc})") from exc


def register(
    settings: Settings,
    *,
    model: str,
    artifact: Path,
    reference: Path,
    target: str,
    categorical: list[str],
) -> ModelCard:
    """Register a model trained elsewhere, with its reference rows, as the new `production`."""
    check_name("model", model)
    frame = _read_frame(reference, "reference")
    if target not in frame.columns:
        raise InputError(
            f"reference {reference} lacks the target column {target!r} "
            f"(found {', '.join(map(str, frame.columns))}); pass --target with its name"
        )
    if not artifact.is_file():
        raise InputError(f"artifact {artifact} does not exist; pass a joblib file of the model")
    try:
        estimator = joblib.load(artifact)  # the user's own file, which they ask us to register
    except Exception as exc:
        raise InputError(f"artifact {artifact}: cannot be loaded with joblib ({exc})") from exc
    if not hasattr(estimator, "predict"):
        raise InputError(f"artifact {artifact}: {type(estimator).__name__} has no predict()")
    features = describe_features(frame, target=target, categorical=categorical)
    prepared = prepare(estimator, frame, target=target, features=features)
    return _register(Registry.open(settings.model_registry_uri), model, prepared)


@dataclass(frozen=True)
class SimulationSummary:
    model: str
    model_version: str
    days: int
    rows: int
    label_files: int
    drift_start: date


def simulate(
    settings: Settings,
    *,
    model: str,
    start: date,
    days: int,
    rows_per_day: int,
    scenario: sim.Scenario,
    seed: int,
    drift_start: date | None = None,
    pool: Path | None = None,
) -> SimulationSummary:
    """Write `days` scored batches and their delayed labels for the production model."""
    if days < 1 or rows_per_day < 0:
        raise InputError(
            f"--days must be >= 1 and --rows-per-day >= 0 (got {days}, {rows_per_day})"
        )
    loaded = Registry.open(settings.model_registry_uri).load(model)
    card = loaded.card
    frame = _read_frame(pool, "pool") if pool else loaded.reference.to_pandas()
    missing = [c for c in [*card.feature_names, card.target] if c not in frame.columns]
    if missing:
        raise InputError(f"pool lacks column(s) {', '.join(missing)} of model {model!r}")
    frame = frame[frame[card.target].notna()].reset_index(drop=True)
    drift_start = drift_start or start + timedelta(days=days // 2)
    lake = Lake.open(settings.data_lake_uri)
    label_files = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        simulated = sim.simulate_day(
            frame,
            card,
            loaded.estimator,
            batch_date=day,
            rows=rows_per_day,
            scenario=scenario,
            drift_start=drift_start,
            seed=seed,
        )
        lake.replace_partition(
            lake.scored_dir(model, day),
            "part-0.parquet",
            _to_arrow(simulated.scored),
        )
        # a rerun replaces this batch's labels wherever they arrived before
        for delay in sim.LABEL_DELAY_DAYS:
            stale = f"{lake.labels_dir(model, day + timedelta(days=int(delay)))}/{_label_file(day)}"
            if lake.exists(stale):
                lake.fs.delete_file(stale)
        for arrival, labels in simulated.labels_by_arrival.items():
            lake.write_table(
                f"{lake.labels_dir(model, arrival)}/{_label_file(day)}", _to_arrow(labels)
            )
            label_files += 1
    return SimulationSummary(
        model, card.version, days, days * rows_per_day, label_files, drift_start
    )


def _label_file(batch_date: date) -> str:
    return f"batch-{batch_date.isoformat()}.parquet"


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)

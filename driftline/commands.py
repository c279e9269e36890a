"""The commands that are not Prefect flows: train, register, simulate, on the Python API
(driftline/api.py): what is left here is reading the user's files and the simulation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa

from core.errors import InputError
from core.names import check_name
from core.settings import REPO_ROOT, Settings
from data_lake.lake import Lake
from driftline.api import check_reference, register_model, write_scored
from model_registry.registry import MODEL_FILE, ModelCard, Registry
from tasks.models import simulate as sim
from tasks.models.training import fit_random_forest

DIAMONDS = REPO_ROOT / "driftline" / "data" / "diamonds.parquet"
DIAMONDS_CATEGORICAL = ["cut", "color", "clarity"]


def train(settings: Settings, *, model: str, seed: int = 42) -> ModelCard:
    """Fit the diamonds RandomForestRegressor pipeline and make it `production`."""
    check_name("model", model)
    pipeline, reference = fit_random_forest(
        pd.read_parquet(DIAMONDS), target="price", categorical=DIAMONDS_CATEGORICAL, seed=seed
    )
    return register_model(
        model,
        pipeline,
        reference,
        target="price",
        categorical=DIAMONDS_CATEGORICAL,
        registry=settings.model_registry_uri,
    )


def train_classifier(settings: Settings, *, model: str, seed: int = 42) -> ModelCard:
    """Fit the demo's breast cancer classifier (tasks/models/classifier.py) as `production`."""
    from tasks.models.classifier import fit_breast_cancer_classifier

    check_name("model", model)
    pipeline, reference, target = fit_breast_cancer_classifier(seed=seed)
    return register_model(
        model, pipeline, reference, target=target, registry=settings.model_registry_uri
    )


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
    artifact: Path | None,
    reference: Path,
    target: str,
    categorical: list[str],
    task: str | None = None,
    date_column: str | None = None,
) -> ModelCard:
    """Register a model trained elsewhere, with its reference rows, as the new `production`;
    without `artifact` the reference's `prediction` column stands in for the model."""
    check_name("model", model)
    frame = _read_frame(reference, "reference")
    check_reference(frame, target, has_model=artifact is not None, source=str(reference), cli=True)
    return register_model(
        model,
        None if artifact is None else _load_artifact(artifact),
        frame,
        target=target,
        categorical=categorical,
        task=task,
        date_column=date_column,
        registry=settings.model_registry_uri,
    )


def _load_artifact(artifact: Path) -> object:
    if not artifact.is_file():
        raise InputError(f"artifact {artifact} does not exist; pass a joblib file of the model")
    try:
        estimator = joblib.load(artifact)  # the user's own file, which they ask us to register
    except Exception as exc:
        raise InputError(f"artifact {artifact}: cannot be loaded with joblib ({exc})") from exc
    if not hasattr(estimator, "predict"):
        raise InputError(f"artifact {artifact}: {type(estimator).__name__} has no predict()")
    return estimator


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
    registry = Registry.open(settings.model_registry_uri)
    if MODEL_FILE not in registry.card(model).sha256:
        version = registry.resolve(model)
        raise InputError(
            f"model {model!r} {version} was registered without a model file (its reference held "
            "the predictions), and simulate needs one to score rows; register it again with "
            "--artifact model.joblib"
        )
    loaded = registry.load(model)
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
        write_scored(lake, card, day, _to_arrow(simulated.scored))
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

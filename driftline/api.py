"""The Python API for the jobs around the monitor (docs/contract.md, "Python API"): register a
model, write a day's scored batch and labels, monitor a day, read and set the model's policy.

Each verb resolves its settings as the command line does (`core.settings.load_settings`), with
`lake=` and `registry=` in place of DATA_LAKE_URI and MODEL_REGISTRY_URI, then calls the worker
the command line shares with it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
import pyarrow as pa
import yaml

from core.errors import InputError
from core.names import check_name
from core.policy import Policy
from core.settings import Settings, load_settings
from data_lake.columns import PREDICTION
from data_lake.lake import Lake
from model_registry.policies import current_policy
from model_registry.policies import set_policy as set_policy_version
from model_registry.registry import ModelCard, Registry
from tasks.edge.validation import check_batch_date, validate_batch, validate_labels

if TYPE_CHECKING:
    from tasks.results.day import MonitoringResult

Frame: TypeAlias = pd.DataFrame | pa.Table
# every day driftline writes is this one file: writing the day again replaces it
PARTITION_FILE = "part-0.parquet"
TASKS = ("regression", "classification")
_LOG = logging.getLogger("driftline")


def register_model(
    name: str,
    estimator: Any | None,
    reference: Frame,
    *,
    target: str,
    categorical: Sequence[str] = (),
    task: str | None = None,
    date_column: str | None = None,
    registry: str | None = None,
) -> ModelCard:
    """Register a fitted regressor or classifier and its out-of-sample reference rows as
    `production`.

    `reference` holds the feature columns and `target`, and may hold `prediction` (and, for a
    classifier, `proba_<class>` per class); without them `estimator` predicts them. `task`
    (`regression` or `classification`) is inferred when None (tasks/models/classifier.py).
    `estimator` may be None when the reference holds its predictions: the version then has no
    model file (monitoring needs none). Each row's day, from
    `date_column` (default: a `batch_date` or `scored_at` column), teaches the monitor how much
    a normal day varies, and how far a day's error strays from its estimate. Returns the new
    version's card.
    """
    check_name("model", name)
    _check_task(task)
    frame = reference.to_pandas() if isinstance(reference, pa.Table) else reference
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"reference is a {type(reference).__name__}; pass a pandas DataFrame or a pyarrow Table"
        )
    check_reference(frame, target, has_model=estimator is not None)
    if estimator is not None and not hasattr(estimator, "predict"):
        raise InputError(f"estimator: {type(estimator).__name__} has no predict()")
    settings = _settings(registry=registry)
    return _store(
        Registry.open(settings.model_registry_uri),
        name,
        estimator,
        frame,
        target=target,
        categorical=list(categorical),
        date_column=date_column,
        task=task,
    )


def check_reference(
    frame: pd.DataFrame, target: str, *, has_model: bool, source: str = "", cli: bool = False
) -> None:
    """Refuse a reference without the target column, or without predictions when no model
    comes with it; `source` names its file and `cli` words the fix as the command line's flags."""
    where = f"reference {source}".strip()
    if target not in frame.columns:
        fix = "pass --target with its name" if cli else "pass target= its name"
        raise InputError(
            f"{where} lacks the target column {target!r} "
            f"(found {', '.join(map(str, frame.columns))}); {fix}"
        )
    if not has_model and PREDICTION not in frame.columns:
        missing, fix = (
            ("no --artifact was given", "pass --artifact model.joblib")
            if cli
            else ("estimator is None", "pass the fitted model")
        )
        raise InputError(
            f"{where} has no {PREDICTION!r} column and {missing}; {fix}, or add the model's "
            f"predictions to the reference as a {PREDICTION!r} column"
        )


def write_batch(
    model: str,
    batch_date: date | str,
    frame: Frame,
    *,
    lake: str | None = None,
    registry: str | None = None,
) -> str:
    """Validate a day's scored batch against the production card as the nightly run does, then
    replace that day's partition with it; returns the written file's URI. Nothing is written
    when the batch is refused."""
    settings = _settings(lake=lake, registry=registry)
    card = _production_card(settings, model)
    store = Lake.open(settings.data_lake_uri)
    uri, notes = write_scored(store, card, _day(batch_date), _table(frame))
    for note in notes:  # untidy but usable, as the nightly run will also say
        warnings.warn(note, UserWarning, stacklevel=2)
    return uri


def write_labels(
    model: str,
    arrival_date: date | str,
    frame: Frame,
    *,
    lake: str | None = None,
    registry: str | None = None,
) -> str:
    """Validate the labels that arrived on `arrival_date` (row_id and the card's target) as the
    nightly run does, then replace that arrival day's labels with them; returns the file's URI."""
    settings = _settings(lake=lake, registry=registry)
    card = _production_card(settings, model)
    store = Lake.open(settings.data_lake_uri)
    directory = store.labels_dir(card.name, _day(arrival_date, what="arrival_date"))
    path = f"{directory}/{PARTITION_FILE}"
    table = _table(frame)
    validate_labels(table, target=card.target, source=store.uri_of(path), classes=card.classes)
    store.replace_partition(directory, PARTITION_FILE, table)
    return store.uri_of(path)


def monitor_day(
    model: str,
    batch_date: date | str,
    *,
    push: bool = False,
    lake: str | None = None,
    registry: str | None = None,
) -> MonitoringResult:
    """Monitor one batch day as the nightly run does, without Prefect: result.json and
    report.html written to the lake, the gauges pushed once when `push` (a failed push raises
    RunError). With `push`, a day that fails adds its failure to the model's group as the
    nightly run's does (a warning on the `driftline` logger when the Pushgateway does not take
    it). Returns the day's result."""
    from tasks.day.engine import monitor_and_write
    from tasks.day.failure import failure_pushed
    from tasks.day.inputs import load_model_context

    settings = _settings(lake=lake, registry=registry, push=push)
    check_name("model", model)
    day = _day(batch_date)
    with failure_pushed(settings, model, day, push=push, warn=_LOG.warning) as attempt:
        context = load_model_context(
            Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir), model
        )
        attempt.model_version = context.card.version
        written = monitor_and_write(
            Lake.open(settings.data_lake_uri), context, day, settings, push=push
        )
    return written.result


# shared with the command line ------------------------------------------------------------------
def get_policy(model: str, *, registry: str | None = None) -> Policy:
    """The monitoring policy in force for `model` (its defaults when none was set)."""
    settings = _settings(registry=registry)
    store = Registry.open(settings.model_registry_uri)
    store.card(check_name("model", model))  # an unknown model is bad input, not the defaults
    return current_policy(store, model)


def set_policy(
    model: str, policy: Mapping[str, Any] | str | Path, *, registry: str | None = None
) -> Policy:
    """Store a new policy version for `model` and put it in force; `policy` is a mapping of
    policy keys or the path of a JSON or YAML file of them. The model version is untouched."""
    check_name("model", model)
    settings = _settings(registry=registry)
    if isinstance(policy, Mapping):
        raw: object = dict(policy)
        source = "policy"
    else:
        raw, source = _policy_file(Path(policy)), str(policy)
    return set_policy_version(Registry.open(settings.model_registry_uri), model, raw, source=source)


def _policy_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"policy file {path} cannot be read ({exc}); pass a JSON or YAML file"
        ) from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise InputError(f"policy file {path} is not valid JSON or YAML ({reason})") from None


def write_scored(
    lake: Lake, card: ModelCard, batch_date: date, table: pa.Table
) -> tuple[str, tuple[str, ...]]:
    """Validate `table` as the nightly run validates the batch of `batch_date`, then make it
    the day's one file; returns its URI and the validation's warnings."""
    directory = lake.scored_dir(card.name, batch_date)
    # the nightly run's own source (tasks/day/engine.py `read_batch`), so the message is its own
    source = f"batch {batch_date} ({lake.uri_of(directory)})"
    notes = validate_batch(table, card, source=source).warnings
    lake.replace_partition(directory, PARTITION_FILE, table)
    return lake.uri_of(f"{directory}/{PARTITION_FILE}"), notes


def _store(
    registry: Registry,
    name: str,
    estimator: Any | None,
    reference: pd.DataFrame,
    *,
    target: str,
    categorical: list[str],
    date_column: str | None = None,
    task: str | None = None,
) -> ModelCard:
    """Store the version with its reference profile and loss estimator (a classifier: its
    calibration), fitted once here for every nightly run."""
    import pyarrow.parquet as pq

    from tasks.edge.calibration_file import calibration_files
    from tasks.edge.estimator_file import loss_estimator_files
    from tasks.edge.profile_file import profile_files
    from tasks.models.classifier import infer_task, prepare_classifier, proba_columns
    from tasks.models.training import describe_features, prepare

    kind = task or infer_task(estimator, reference, target)
    described = (
        reference.drop(columns=proba_columns(reference)) if kind != "regression" else reference
    )
    features = describe_features(
        described, target=target, categorical=categorical, date_column=date_column
    )
    prepare_task = prepare if kind == "regression" else prepare_classifier
    prepared = prepare_task(
        estimator, reference, target=target, features=features, date_column=date_column
    )
    stored = pq.read_table(pa.BufferReader(prepared.reference_bytes))
    if prepared.task == "classification":
        estimator_files, extra = calibration_files(stored, prepared)
    else:
        estimator_files, extra = loss_estimator_files(stored, prepared)
    return registry.register(
        model=name,
        estimator_bytes=prepared.estimator_bytes,
        reference_bytes=prepared.reference_bytes,
        target=prepared.target,
        features=prepared.features,
        metrics=prepared.metrics,
        libraries=prepared.libraries,
        extra_files={**profile_files(stored, prepared), **estimator_files},
        extra=extra,
        task=prepared.task,
        classes=prepared.classes,
    )


def _settings(
    *, lake: str | None = None, registry: str | None = None, push: bool = False
) -> Settings:
    return load_settings(push=push, data_lake_uri=lake, model_registry_uri=registry)


def _production_card(settings: Settings, model: str) -> ModelCard:
    check_name("model", model)
    return Registry.open(settings.model_registry_uri).card(model)


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise InputError(f"task {task!r} is not one of {', '.join(TASKS)}")


def _day(value: date | str, *, what: str = "batch_date") -> date:
    if isinstance(value, datetime):  # a datetime is a date too, and would print its time
        value = value.date()
    if isinstance(value, date):
        return check_batch_date(value)
    try:
        return check_batch_date(date.fromisoformat(str(value)))
    except ValueError:
        raise InputError(
            f"{what} {value!r} is not a date; pass a datetime.date or 'YYYY-MM-DD'"
        ) from None


def _table(frame: Frame) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pd.DataFrame):
        return pa.Table.from_pandas(frame, preserve_index=False)
    raise InputError(
        f"the frame is a {type(frame).__name__}; pass a pandas DataFrame or a pyarrow Table"
    )

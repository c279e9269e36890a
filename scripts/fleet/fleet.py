"""The fleet: one trained model under many names, each with batches of its own, and the same days
computed locally with the plain functions to compare with."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

from core.settings import Settings, load_settings
from data_lake.lake import Lake
from model_registry.registry import MODEL_FILE, REFERENCE_FILE, ModelCard, Registry
from tasks.day.engine import run_day
from tasks.day.inputs import load_model_context
from tasks.export.catalogue import JOB, RunStamp, metric_families, registry_for
from tasks.results.day import MonitoringResult

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START = date(2026, 1, 1)
SOURCE_MODEL = "diamonds-price"
# wall-clock gauges: a run and its local replay differ in them by nature
VOLATILE = frozenset(
    {
        "ml_monitoring_last_success_timestamp_seconds",
        "ml_monitoring_run_duration_seconds",
        "push_time_seconds",
        "push_failure_time_seconds",
    }
)
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# --- the fleet: one trained model under many names, each with batches of its own -------------


def model_names(count: int) -> list[str]:
    return [f"gem-{i:04d}" for i in range(count)]


def clone_model(registry: Registry, source: str, name: str) -> ModelCard:
    """Register `source`'s production version again as `name` (same files, a card of its own)."""
    card = registry.card(source)
    files = {filename: registry.read_verified(card, filename) for filename in card.sha256}
    return registry.register(
        model=name,
        estimator_bytes=files.pop(MODEL_FILE),
        reference_bytes=files.pop(REFERENCE_FILE),
        target=card.target,
        features=card.features,
        metrics=card.metrics,
        libraries=card.libraries,
        extra_files=files,
        extra=card.extra,
    )


def _simulate(lake: str, registry: str, model: str, days: int, rows: int, seed: int) -> str:
    from driftline import commands

    settings = load_settings({"DATA_LAKE_URI": lake, "MODEL_REGISTRY_URI": registry})
    commands.simulate(settings, model=model, start=START, days=days, rows_per_day=rows,
                      scenario="both", seed=seed)  # fmt: skip
    return model


def build_fleet(
    settings: Settings,
    models: Sequence[str],
    *,
    days: int,
    rows_per_day: int,
    jobs: int = 1,
    distinct: int = 10,
) -> None:
    """Register `SOURCE_MODEL` (already in the registry) as every one of `models`, and give each
    `days` batches from START (data and concept drift from the middle): the first `distinct`
    models simulated with their own seed, the others a copy of the files of one of those (model
    i gets model i % distinct's), in partitions of their own. A local lake only."""
    registry = Registry.open(settings.model_registry_uri)
    for name in models:
        clone_model(registry, SOURCE_MODEL, name)
    simulated = list(models[:distinct])
    args = [
        (settings.data_lake_uri, settings.model_registry_uri, m, days, rows_per_day, i)
        for i, m in enumerate(simulated)
    ]
    if jobs <= 1:
        for a in args:
            _simulate(*a)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_simulate, *zip(*args, strict=True)))
    lake = Path(settings.data_lake_uri)
    for i, name in enumerate(models[distinct:], start=distinct):
        source = simulated[i % len(simulated)]
        for dataset in ("scored", "labels"):
            shutil.copytree(lake / dataset / f"model={source}", lake / dataset / f"model={name}")


# --- the same days one by one, locally, with the plain functions ------------------------------


def local_results(settings: Settings, model: str, days: Sequence[date]) -> list[MonitoringResult]:
    """Each day computed as a nightly run computes it, one day at a time, without Prefect."""
    lake = Lake.open(settings.data_lake_uri)
    registry = Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir)
    context = load_model_context(registry, model)
    return [run_day(lake, context, day, settings).result for day in days]


def per_model_run(settings: Settings, model: str, day: date, scratch: Path) -> bytes:
    """The day's result.json as a per-model run writes it (`driftline.monitor_day`, the nightly
    run without Prefect), into a scratch lake that links the model's batches and labels."""
    from driftline import monitor_day

    source = Path(settings.data_lake_uri)
    for dataset in ("scored", "labels"):
        link = scratch / dataset / f"model={model}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source / dataset / f"model={model}")
    monitor_day(model, day, lake=str(scratch), registry=settings.model_registry_uri)
    lake = Lake.open(str(scratch))
    return lake.read_bytes(lake.result_path(model, day)) or b""


def lake_differences(
    settings: Settings, model: str, days: Sequence[date], scratch: Path
) -> list[str]:
    """The days whose result.json in the lake is missing or differs from a per-model run's
    (`per_model_run`, the days in order, so that each sees the results of the days before)."""
    lake = Lake.open(settings.data_lake_uri)
    differences = []
    for day in days:
        stored = lake.read_bytes(lake.result_path(model, day))
        if stored is None:
            differences.append(f"{model} {day}: no result.json")
        elif stored != per_model_run(settings, model, day, scratch):
            differences.append(f"{model} {day}: result.json differs from a per-model run")
    return differences


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str, *, drop_labels: Sequence[str] = ()) -> Samples:
    """Exposition text as {(name, sorted labels): value}, wall-clock gauges left out."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in VOLATILE:
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop_labels))
            samples[(s.name, labels)] = s.value
    return samples


def expected_samples(result: MonitoringResult) -> Samples:
    """What a push of `result` carries (its grouping labels job and model in the URL)."""
    from prometheus_client.exposition import generate_latest

    text = generate_latest(registry_for(metric_families(result, RunStamp(0.0, 0.0))))
    return parse_samples(text.decode())


def pushgateway_groups(pushgateway_url: str) -> dict[str, Samples]:
    """Every model's group on the Pushgateway, without the job, model and instance labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{pushgateway_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    groups: dict[str, Samples] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("job") != JOB or s.name in VOLATILE:
                continue
            model = s.labels["model"]
            labels = tuple(
                sorted((k, v) for k, v in s.labels.items() if k not in {"job", "model", "instance"})
            )
            groups.setdefault(model, {})[(s.name, labels)] = s.value
    return groups

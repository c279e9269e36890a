"""The fleet: many models' nightly runs in one flow run, each model on its own.

`split` deals the served models out into slices in name order: the slices differ by one model at
most (the night ends when the largest does), and deploying again after adding a model may move
others to another slice, which is harmless (a model's results, lock and push are its own).
`monitor_model` is one model's whole night in-process through the nightly run's engine
(`tasks.day.engine.monitor_and_write`): its version loaded, its batch and window read, computed,
written and pushed under its own day lock. A model that fails fails alone, and says so in its
own group on the Pushgateway (tasks/day/failure.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date

from core.errors import InputError
from core.names import check_name
from core.settings import Settings
from data_lake.lake import Lake
from model_registry.registry import Registry
from tasks.day.engine import monitor_and_write
from tasks.day.failure import Attempt
from tasks.day.inputs import load_model_context
from tasks.results.fleet import ModelNight


def split(models: Iterable[str], slices: int) -> list[list[str]]:
    """Every model in exactly one of `slices` slices: the names sorted, then dealt out in turn,
    so slices differ by one model at most and the same names always give the same slices."""
    if slices < 1:
        raise InputError(f"slices must be at least 1 (got {slices})")
    names = sorted({check_name("model", m) for m in models})
    if not names:
        raise InputError("no models to split; name them (--models a,b or DRIFTLINE_MODELS)")
    return [names[index::slices] for index in range(slices)]


def slice_name(index: int, slices: int) -> str:
    """The name of slice `index` (0-based) of `slices`: fleet-1-of-4 ... fleet-4-of-4."""
    return f"fleet-{index + 1}-of-{slices}"


def checked_models(models: Iterable[str]) -> list[str]:
    """The slice's models, each named once, in the order given (a name that is not allowed
    fails as that model's night, not the slice's)."""
    names = list(dict.fromkeys(models))
    if not names:
        raise InputError("a fleet run needs at least one model (got an empty list)")
    return names


def monitor_model(
    settings: Settings,
    model: str,
    batch_date: date,
    *,
    push: bool,
    attempt: Attempt | None = None,
) -> ModelNight:
    """One model's night, as `driftline monitor --model` runs it, with the push's retries; the
    version is noted in `attempt` once read; a push that failed is the engine's PushError."""
    started = time.perf_counter()
    check_name("model", model)
    registry = Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir)
    context = load_model_context(registry, model)
    if attempt is not None:
        attempt.model_version = context.card.version
    written = monitor_and_write(
        Lake.open(settings.data_lake_uri),
        context,
        batch_date,
        settings,
        push=push,
        push_retry_delays=settings.push.retry_delays_seconds,
    )
    return ModelNight(
        model=model,
        batch_date=batch_date,
        result=written.result,
        failure=None,
        duration_seconds=time.perf_counter() - started,
        report_uri=written.report_uri,
    )


def failed_night(model: str, batch_date: date, reason: str) -> ModelNight:
    return ModelNight(model, batch_date, None, reason, 0.0)

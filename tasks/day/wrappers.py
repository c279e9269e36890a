"""How a step's plain function becomes a Prefect task: a name, retries only on I/O, no caching.

Steps that cross a boundary (lake, registry, Pushgateway) retry what may pass; driftline's own
errors (bad input, a missing batch) would fail the same way again, so they are not retried.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from core.errors import DriftlineError
from core.settings import IO_RETRY_DELAYS_SECONDS

P = ParamSpec("P")
R = TypeVar("R")


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass (network, storage); bad input and missing batches will not."""
    return not isinstance(state.data, DriftlineError)


def io_task(
    name: str, *, task_run_name: Callable[[], str] | None = None
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A step that reads or writes across a boundary: retried after 2, 10 and 30 s."""
    return task(
        name=name,
        task_run_name=task_run_name,
        retries=len(IO_RETRY_DELAYS_SECONDS),
        retry_delay_seconds=list(IO_RETRY_DELAYS_SECONDS),
        retry_condition_fn=transient,
        cache_policy=NO_CACHE,
    )


def compute_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A step that only computes: run once, never cached."""
    return task(name=name, cache_policy=NO_CACHE)


def artifact_key(kind: str, model: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")

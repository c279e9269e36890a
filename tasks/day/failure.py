"""A night that failed, said in the model's own metrics (docs/contract.md, "Metrics").

A failed night adds one gauge to its model's group with a POST,
`ml_monitoring_last_failure_timestamp_seconds{model_version, reason}`, so the last good night's
gauges stay on the dashboard; the next good night's PUT replaces the group and clears it. The
push is best effort: one attempt, and a Pushgateway that does not take it leaves the night's own
error as it was. A night whose own push failed pushes nothing more: the Pushgateway's
`push_failure_time_seconds` (MLMonitoringPushFailing) or its silence (MLMonitoringStale) says
so, and a POST taken now would hide the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from core.errors import InputError, PushError, UnknownModelError
from core.names import is_valid_name
from core.settings import PushSettings, Settings
from tasks.export import pushgateway
from tasks.export.catalogue import UNKNOWN_VERSION, FailureReason


@dataclass
class Attempt:
    """What a night that fails can say of itself: the model version, once its card was read."""

    model: str
    batch_date: date
    model_version: str = UNKNOWN_VERSION


def reason_of(error: BaseException) -> FailureReason:
    """input: bad input (exit 2); storage: the lake or registry failing, through the retries;
    error: anything else (a missing batch, a lock held too long, a bug)."""
    if isinstance(error, InputError):
        return "input"
    if isinstance(error, OSError) or isinstance(error.__cause__, OSError):
        return "storage"
    return "error"


def push_failure(
    push: PushSettings,
    attempt: Attempt,
    error: BaseException,
    *,
    handler: pushgateway.Handler | None = None,
) -> str | None:
    """POST the night's failure into its model's group; why it could not be, or None."""
    if isinstance(error, PushError | UnknownModelError) or not is_valid_name(attempt.model):
        # the Pushgateway's own series tell a failed push; a model the registry does not know
        # (a typo) or a name not allowed would only start a group, and an alert, of its own
        return None
    try:
        pushgateway.push_failure(
            attempt.model,
            attempt.model_version,
            reason_of(error),
            time.time(),
            gateway=push.url,
            handler=handler or pushgateway.handler_for(push),
        )
    except Exception as exc:  # best effort: nothing here may take the place of the night's error
        return (
            f"the failure of {attempt.model} {attempt.batch_date} could not be pushed to the "
            f"Pushgateway at {pushgateway.redact_url(push.url)} "
            f"({pushgateway.failure_reason(exc)}); the run's own error follows"
        )
    return None


@contextmanager
def failure_pushed(
    settings: Settings,
    model: str,
    batch_date: date,
    *,
    push: bool,
    warn: Callable[[str], object],
    tried_again: Callable[[BaseException], bool] = lambda _: False,
) -> Iterator[Attempt]:
    """A night that fails (and is not `tried_again`) adds its failure to the model's group on
    the Pushgateway, `warn`s when that push is not taken, then fails as it would have; set the
    yielded attempt's version once known."""
    attempt = Attempt(model, batch_date)
    try:
        yield attempt
    except Exception as exc:
        if push and not tried_again(exc):
            problem = push_failure(settings.push, attempt, exc)
            if problem is not None:
                warn(problem)
        raise

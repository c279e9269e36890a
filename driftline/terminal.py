"""How a command meets the terminal once Prefect runs it: the Prefect server to use, a failed
run told as one line (Prefect's own account of it stays in its API log, where the UI shows it),
the one line for a Prefect API that does not answer, and Ctrl-C told as Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


def flow_environment() -> None:
    """Before a flow runs: the local stack's Prefect server when it is up (unless
    PREFECT_API_URL says otherwise), and a terminal that shows a failed run as one line."""
    from driftline import stack

    api_url = stack.prefect_api_url()
    if api_url and not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = api_url
    imported = "prefect.context" in sys.modules  # in the stack's runner, before this command
    from prefect import flow  # noqa: F401  (sets up Prefect's logging: its console handler)

    if imported:  # Prefect read its settings from the runner's environment: this one's instead
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()

    # Prefect's account of a failure (traceback, Failed states) stays in its API log, where
    # the UI shows it; the terminal gets the one line `main` prints instead
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_a_failure)


def _not_a_failure(record: logging.LogRecord) -> bool:
    """Not Prefect's account of a failure, nor its workers' note at exit that they are still
    sending the run's last events (they finish before the process ends)."""
    return record.levelno < logging.ERROR and not str(record.msg).startswith(
        ("Finished in state Failed", "Finished in state Crashed", "Still processing items")
    )


def prefect_unreachable(exc: BaseException) -> str | None:
    """The one line for a run whose Prefect API does not answer, else None.

    A server down at the start surfaces as Prefect's RuntimeError "Failed to reach API" raised
    from httpx's connection error; a server gone mid-run as that error itself, once Prefect's
    client has retried (PREFECT_CLIENT_MAX_RETRIES). Only Prefect talks httpx here.
    """
    try:
        import httpx
    except ImportError:
        return None
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, httpx.TransportError):
            break
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    else:
        return None
    assert cause is not None
    detail = (str(cause).strip().splitlines() or [""])[0]
    reason = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        return f"Prefect's temporary local server stopped answering ({reason}); run it again"
    from driftline import hints

    return (
        f"the Prefect server at {api_url} does not answer ({reason}); start it with "
        f"`{hints.command('stack up')}` or unset PREFECT_API_URL, then run the command again"
    )


@contextlib.contextmanager
def noting_interrupts() -> Iterator[threading.Event]:
    """An event set when Ctrl-C arrives while the block runs. Ctrl-C raises KeyboardInterrupt
    wherever the main thread is, and a library may catch it there and raise something else
    (pydantic turns it into a ValidationError while Prefect serialises its settings): with the
    event, such a run is still told as interrupted (exit 130), not as failed."""
    seen = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):  # someone else's handler: theirs to tell
        yield seen
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)

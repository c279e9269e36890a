"""The tests' launcher: driftline/stack/launcher.py (shared with scripts/), with two test rules.

- A server (Prometheus, Pushgateway, Alertmanager, a Prefect server) started by a test not
  marked e2e is refused: tests/conftest.py sets `current_test_markers` for each test.
- A program missing from PATH fails the test (never skips it).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from driftline.stack import launcher
from driftline.stack.launcher import (
    ALERTMANAGER,
    PROMETHEUS,
    PUSHGATEWAY,
    SHARED_PUSHGATEWAY_FILE,
    Process,
    Server,
    free_port,
    launched,
    prometheus,
    pushgateway,
    pushgateway_argv,
    run,
    serving,
    wait_for,
)
from driftline.stack.listening import listening_sockets, process_group

__all__ = [
    "ALERTMANAGER",
    "PROMETHEUS",
    "PUSHGATEWAY",
    "SHARED_PUSHGATEWAY_FILE",
    "Process",
    "Server",
    "binary",
    "free_port",
    "launched",
    "listening_sockets",
    "process_group",
    "prometheus",
    "pushgateway",
    "pushgateway_argv",
    "run",
    "serving",
    "wait_for",
]

# The markers of the test running now, set by tests/conftest.py (None outside a test).
current_test_markers: frozenset[str] | None = None


def binary(name: str) -> str:
    """Return the path of a program on PATH; fail the test (never skip it) when it is missing."""
    try:
        return launcher.binary(name)
    except launcher.MissingProgram as missing:
        pytest.fail(str(missing))


def refuse_servers_outside_e2e(argv: Sequence[str]) -> None:
    """Refuse a server started by a test not marked e2e."""
    markers = current_test_markers
    if launcher.is_server(argv) and markers is not None and "e2e" not in markers:
        raise AssertionError(f"this test starts a server ({' '.join(argv)}): mark it e2e")


launcher.launch_guard = refuse_servers_outside_e2e

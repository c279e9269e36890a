"""Shared test set-up: Prefect kept local and inside the repo, tiny seeded builders.

Prefect reads its settings when first imported, so the environment is set here, before any test
module imports a flow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

import pytest

from tests import procs

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.stack_fixtures"]
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# the real stdout: pytest swaps sys.stdout per test, and Prefect keeps the stream it saw first
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM"] = "ext://sys.__stdout__"
os.environ.setdefault("PREFECT_HOME", str(REPO / "var" / "prefect-tests"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
# a developer's own `driftline stack up` (var/stack) must not receive the tests' runs: the
# command line looks for the stack's Prefect server here, where no test starts one
os.environ["DRIFTLINE_STACK_DIR"] = str(REPO / "var" / "stack-tests")
os.environ.pop("PREFECT_API_URL", None)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM to the test run (CI cancelling it, `kill`) interrupts it like Ctrl-C, so the
    fixtures' finalisers still stop by pid every process the tests started."""
    signal.signal(signal.SIGTERM, _interrupted)


# --- markers: every test that starts servers is e2e, every test that runs Prefect flows prefect ---

# Session fixtures start their processes for the first test that asks; the others must say so too.
E2E_FIXTURES = {"live_stack", "monitored_stack"}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    markers = frozenset(m.name for m in item.iter_markers())
    procs.current_test_markers = markers  # the launcher refuses servers for unmarked tests
    uses = E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
    if uses and "e2e" not in markers:
        pytest.fail(f"{item.nodeid} uses {sorted(uses)}: mark it @pytest.mark.e2e")


def _prefect_temporary_servers() -> set[int]:
    """Prefect's temporary API servers running in this process (started by a first flow run)."""
    server = sys.modules.get("prefect.server.api.server")
    instances = getattr(getattr(server, "SubprocessASGIServer", None), "_instances", {})
    return {id(i) for i in instances.values() if getattr(i, "running", False)}


@pytest.fixture(autouse=True)
def _flows_only_in_prefect_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts Prefect's temporary server runs flows: it must be marked prefect."""
    before = _prefect_temporary_servers()
    yield
    if request.node.get_closest_marker("prefect") is None and _prefect_temporary_servers() - before:
        pytest.fail(f"{request.node.nodeid} ran a Prefect flow: mark it @pytest.mark.prefect")


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed command line as a user would, in a fresh process (and group)."""
    return procs.run(
        [sys.executable, "-m", "driftline", *args],
        env={**os.environ, **env},
        cwd=REPO,
        timeout_seconds=timeout,
    )


@pytest.fixture
def lake_env(tmp_path: Path) -> dict[str, str]:
    """A private lake and registry for one test; the Pushgateway points nowhere useful."""
    return {
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
        "PUSHGATEWAY_URL": "http://127.0.0.1:9",
        "PROMETHEUS_URL": "http://127.0.0.1:9",
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
    }


@pytest.fixture(scope="session")
def diamonds_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one trained diamonds-price version (trained once per session)."""
    from core.settings import load_settings
    from driftline import commands

    root = tmp_path_factory.mktemp("registry")
    commands.train(load_settings({"MODEL_REGISTRY_URI": str(root)}), model="diamonds-price")
    return root


def simulated_world(
    root: Path, registry: Path, *, start: date, days: int, rows_per_day: int, seed: int
) -> Path:
    """`root` with a copy of `registry` and a lake of `days` simulated diamonds-price batches."""
    import shutil

    from core.settings import load_settings
    from driftline import commands

    shutil.copytree(registry, root / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")}
    )
    commands.simulate(settings, model="diamonds-price", start=start, days=days,
                      rows_per_day=rows_per_day, scenario="none", seed=seed)  # fmt: skip
    return root


@pytest.fixture
def trained_env(
    lake_env: dict[str, str], diamonds_registry: Path, tmp_path: Path
) -> dict[str, str]:
    """`lake_env` with a private copy of the trained diamonds registry."""
    import shutil

    shutil.copytree(diamonds_registry, lake_env["MODEL_REGISTRY_URI"])
    return lake_env

"""Shared test set-up: Prefect kept local and inside the repo, tiny seeded builders.

Prefect reads its settings when first imported, so the environment is set here, before any test
module imports a flow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.stack_fixtures"]
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# the real stdout: pytest swaps sys.stdout per test, and Prefect keeps the stream it saw first
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM"] = "ext://sys.__stdout__"
os.environ.setdefault("PREFECT_HOME", str(REPO / "var" / "prefect-tests"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed command line as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "driftline", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
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


@pytest.fixture
def trained_env(
    lake_env: dict[str, str], diamonds_registry: Path, tmp_path: Path
) -> dict[str, str]:
    """`lake_env` with a private copy of the trained diamonds registry."""
    import shutil

    shutil.copytree(diamonds_registry, lake_env["MODEL_REGISTRY_URI"])
    return lake_env

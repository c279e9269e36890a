"""The Prefect server a run reports to (PREFECT_API_URL) is down at the start, or dies mid-run:
a real `prefect server start` on a free loopback port with its own PREFECT_HOME, and
`driftline monitor` as a user runs it, in a process of its own.

Either way the run exits 1 with one `driftline: error:` line naming the server's URL and what to
do, the lake holds the day's whole result or nothing of it (no temporary file, no lock), and once
the server is back the next run completes the day.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from data_lake.lake import Lake
from tasks.results.day import from_json
from tests.conftest import REPO, run_cli, simulated_world
from tests.procs import Process, Server, free_port, launched, wait_for
from tests.pushgateway_recorder import failure_labels, recording_pushgateway

pytestmark = [pytest.mark.e2e, pytest.mark.prefect]

MODEL = "diamonds-price"
START = date(2026, 3, 1)
DAY = date(2026, 3, 2)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    return simulated_world(tmp_path_factory.mktemp("prefect-down"), diamonds_registry,
                           start=START, days=3, rows_per_day=200, seed=5)  # fmt: skip


@pytest.fixture
def world(simulated: Path, tmp_path: Path) -> Path:
    shutil.copytree(simulated, tmp_path / "world")
    return tmp_path / "world"


@dataclass
class PrefectServer:
    """A Prefect server on a loopback port with its own PREFECT_HOME, started when the test
    says so and stopped by its pid."""

    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it (again, on the same port and database) and wait until its API answers."""
        if self.process is None:
            self.process = Process.start(self.argv, out=self.log, env=self.env, cwd=REPO)
        else:
            self.process.start_again()
        # 10-20 s on a quiet 2-core machine
        Server(self.process, self.port, "/api/health").wait_ready(timeout_seconds=240)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL to its group: no goodbye

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """Not started yet: the test decides when the server is there."""
    home = tmp_path / "prefect-server"
    home.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    server = PrefectServer(argv, env, port, tmp_path / "prefect-server.log")
    try:
        yield server
    finally:
        server.stop()


def run_env(world: Path, server: PrefectServer, gateway_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATA_LAKE_URI": str(world / "lake"),
        "MODEL_REGISTRY_URI": str(world / "registry"),
        "PUSHGATEWAY_URL": gateway_url,
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
        "PREFECT_API_URL": f"{server.url}/api",
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
    }


def day_dir(world: Path) -> Path:
    return world / "lake" / "monitoring" / f"model={MODEL}" / f"batch_date={DAY}"


def lock_file(world: Path) -> Path:
    return world / "lake" / "monitoring" / f"model={MODEL}" / ".locks" / f"batch_date={DAY}.lock"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("driftline: error:")]


def says_the_server_is_gone(stderr: str, server: PrefectServer) -> None:
    (line,) = error_lines(stderr)
    assert line.startswith(
        f"driftline: error: the Prefect server at {server.url}/api does not answer ("
    ), line
    assert "driftline stack up` or unset PREFECT_API_URL, then run the command again" in line


def test_a_prefect_server_down_at_the_start_fails_in_one_line_and_the_next_run_completes(
    world: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    with recording_pushgateway() as gateway:
        env = run_env(world, prefect_server, gateway.url, tmp_path)
        failed = run_cli("monitor", "--date", DAY.isoformat(), env=env, timeout=300)
        assert failed.returncode == 1, failed.stderr
        assert failed.stderr.count("\n") == 1, failed.stderr
        says_the_server_is_gone(failed.stderr, prefect_server)
        assert "ConnectError" in failed.stderr
        assert not day_dir(world).exists() and not lock_file(world).exists()
        assert gateway.requests == []

        prefect_server.start()  # the operator starts it (`driftline stack up`)
        done = run_cli("monitor", "--date", DAY.isoformat(), env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert from_json((day_dir(world) / "result.json").read_bytes()).n_rows == 200
        assert len(gateway.requests) == 1


@pytest.mark.timeout(900)
def test_a_prefect_server_gone_mid_run_fails_in_one_line_and_leaves_the_lake_whole(
    world: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    lake = Lake.open(str(world / "lake"))
    prefect_server.start()
    with recording_pushgateway() as gateway:
        env = {
            **os.environ,
            **run_env(world, prefect_server, gateway.url, tmp_path),
            "DRIFTLINE_LOCK_WAIT_SECONDS": "600",
            # Prefect's client retries a call that cannot connect 5 times with backoff (about a
            # minute per call) by default; two retries make the same failure come sooner
            "PREFECT_CLIENT_MAX_RETRIES": "2",
        }
        with launched(
            [sys.executable, "-m", "driftline", "monitor", "--date", DAY.isoformat()],
            out=tmp_path / "run.out",
            err=tmp_path / "run.err",
            env=env,
            cwd=REPO,
        ) as run:
            # the test holds the day, so the run stops between its reading and its writing:
            # the server dies there, then the lock is released and the run goes on
            with lake.day_lock(MODEL, DAY, purpose="the test, while the Prefect server dies"):
                wait_for(
                    lambda: "is being written by" in run.stdout() or not run.running(),
                    timeout_seconds=300,
                    what="the run to wait for the day's lock",
                )
                assert run.running(), run.stderr()
                prefect_server.kill()
            code = run.wait(timeout_seconds=600)
        stderr = run.stderr()
        assert code == 1, stderr
        says_the_server_is_gone(stderr, prefect_server)

        # the lake: the day's whole result or none, nothing half-written, the lock released
        result = day_dir(world) / "result.json"
        left = sorted(p.name for p in day_dir(world).iterdir()) if day_dir(world).exists() else []
        assert [name for name in left if name.startswith(".")] == [], left
        killed_result = from_json(result.read_bytes()) if result.exists() else None
        assert not lock_file(world).exists()
        # none of the day's gauges: at most the night's failure, added to the group (the
        # Prefect API may be lost inside the night, at its artifacts, or after it)
        failures = [failure_labels(*request) for request in gateway.requests]
        assert [f["reason"] for f in failures] in ([], ["error"]), failures

        prefect_server.start()  # back: the next run completes the day
        done = run_cli("monitor", "--date", DAY.isoformat(), env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        final = from_json(result.read_bytes())
        assert final.n_rows == 200
        if killed_result is not None:
            assert final == killed_result, "the failed run's result was already the day's"
        assert [method for method, _, _ in gateway.requests].count("PUT") == 1
        assert json.loads(result.read_bytes())["batch_date"] == DAY.isoformat()

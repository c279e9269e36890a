"""Deployments: prefect.yaml and `driftline serve` declare the same runs, and a real Prefect
server runs them: the nightly monitor and the backfill, fanned out in chunks without duplicates."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import InputError
from core.settings import load_settings, served_models
from driftline import commands
from flows.deployments import (
    NIGHTLY_CRON,
    chunks,
    deployments,
    submit_backfill_chunks,
)
from tests import procs

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")


def declared() -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_prefect_yaml_declares_what_serve_runs() -> None:
    in_yaml = declared()
    served = deployments(["diamonds-price"])
    assert sorted(in_yaml) == sorted(d.name for d in served)
    for d in served:
        entry = in_yaml[d.name]
        assert entry["entrypoint"] == d.entrypoint
        assert entry["parameters"] == d.parameters
        assert entry["description"] == d.description
        assert entry["tags"] == d.tags
        schedules = [(s.schedule.cron, s.schedule.timezone) for s in d.schedules]
        assert [(s["cron"], s["timezone"]) for s in entry.get("schedules", [])] == schedules


def test_the_nightly_monitor_runs_at_two_utc_for_every_configured_model() -> None:
    served = deployments(served_models({"DRIFTLINE_MODELS": "diamonds-price, churn"}))
    nightly = {d.name: d for d in served if d.flow_name == "monitor"}
    assert sorted(nightly) == ["monitor-churn", "monitor-diamonds-price"]
    for name, d in nightly.items():
        (schedule,) = d.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (NIGHTLY_CRON, "UTC")
        assert d.parameters == {"model": name.removeprefix("monitor-")}
    assert served_models({}) == ["diamonds-price"]


def test_a_range_is_cut_into_consecutive_chunks() -> None:
    day = date(2024, 1, 1)
    assert chunks(day, day + timedelta(days=6), 3) == [
        (day, day + timedelta(days=2)),
        (day + timedelta(days=3), day + timedelta(days=5)),
        (day + timedelta(days=6), day + timedelta(days=6)),
    ]
    with pytest.raises(InputError, match="chunk_days must be at least 1"):
        chunks(day, day, 0)


# Against a real Prefect server ---------------------------------------------------------------


@pytest.fixture
def prefect_server(tmp_path: Path, trained_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free loopback port, its home in a tmp dir; stopped by pid
    (SIGTERM to the group it leads: the server starts children)."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = procs.free_port()
    env = {
        **os.environ,
        **trained_env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    argv = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with procs.launched(argv, out=tmp_path / "prefect-server.log", env=env) as server:
        server.wait_ready(f"{env['PREFECT_API_URL']}/health", timeout_seconds=120)
        yield env


def prefect(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    done = procs.run([PREFECT, *args], env=env, cwd=REPO, timeout_seconds=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.e2e
@pytest.mark.prefect
def test_deployments_from_prefect_yaml_run_on_a_process_worker_and_publish_artifacts(
    prefect_server: dict[str, str],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = prefect_server
    start = date(2024, 5, 1)
    commands.simulate(
        load_settings(env), model="diamonds-price", start=start, days=3, rows_per_day=200,
        scenario="none", seed=1,
    )  # fmt: skip
    prefect("work-pool", "create", "driftline", "--type", "process", env=env)
    prefect("--no-prompt", "deploy", "--all", env=env)

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        nightly = run_deployment(
            "monitor/monitor-diamonds-price",
            parameters={"batch_date": str(start + timedelta(days=2)), "push": False},
            timeout=0,
        )
        chunked = submit_backfill_chunks(
            "diamonds-price", start, start + timedelta(days=2), chunk_days=2, request_id="t1"
        )
        again = submit_backfill_chunks(
            "diamonds-price", start, start + timedelta(days=2), chunk_days=2, request_id="t1"
        )
        assert [r.id for r in again] == [r.id for r in chunked]
        assert [r.name for r in chunked] == [
            "backfill-diamonds-price-2024-05-01-2024-05-02",
            "backfill-diamonds-price-2024-05-03-2024-05-03",
        ]

        prefect("worker", "start", "--pool", "driftline", "--run-once", env=env, timeout=400)

        with get_client(sync_client=True) as client:
            artifacts: dict[str, set[str]] = {}
            for created in [nightly, *chunked]:
                run = client.read_flow_run(created.id)
                assert run.state is not None and run.state.is_completed(), (run.name, run.state)
                found = client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                    )
                )
                artifacts[run.name] = {a.key for a in found if a.key}
            flow_runs = client.read_flow_runs()
    # runs are named by model and date, and each publishes its artifacts under stable keys
    assert artifacts == {
        "monitor-diamonds-price-2024-05-03": {"drift-diamonds-price", "summary-diamonds-price"},
        "backfill-diamonds-price-2024-05-01-2024-05-02": {"backfill-diamonds-price"},
        "backfill-diamonds-price-2024-05-03-2024-05-03": {"backfill-diamonds-price"},
    }
    assert sum(r.flow_id == chunked[0].flow_id for r in flow_runs) == 2  # no duplicate runs

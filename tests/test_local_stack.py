"""`driftline stack up` runs the whole local stack: the Prometheus services, a receiver that keeps
Alertmanager's notifications, and the Prefect server every command records its runs in."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline import stack
from driftline.stack.alerts import main as alerts_main
from driftline.stack.receiver import read_notifications
from tests.conftest import run_cli
from tests.procs import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.StackConfig]:
    receiver_port = free_port()
    config = stack.StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"),
        prometheus_port=free_port(),
        pushgateway_port=free_port(),
        alertmanager_port=free_port(),
        receiver_port=receiver_port,
        prefect_port=free_port(),
        components=stack.LOCAL_STACK,
        webhook_url=f"http://127.0.0.1:{receiver_port}/alerts",
    )
    stack.up(config, timeout_seconds=180)
    yield config
    stack.down(config.state_dir)


def stack_processes(state_dir: Path) -> list[int]:
    """Every process running in the stack's state dir: what it started and what those started."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd") == str(state_dir.resolve()):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def post_json(url: str, payload: object) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def run_stack_cli(
    *args: str, config: stack.StackConfig, **env: str
) -> subprocess.CompletedProcess[str]:
    """The command line with this stack's state dir: it finds the stack's Prefect server."""
    return run_cli(*args, env={"DRIFTLINE_STACK_DIR": str(config.state_dir), **env})


def test_status_lists_every_component_ready(local: stack.StackConfig) -> None:
    statuses = {s.name: s for s in stack.status(local.state_dir)}
    assert set(statuses) == set(stack.LOCAL_STACK)
    assert all(s.is_ready for s in statuses.values()), stack.format_status(list(statuses.values()))
    assert stack.prefect_api_url(local.state_dir) == f"{local.url('prefect')}/api"


def test_the_receiver_keeps_every_notification_and_alerts_lists_it(
    local: stack.StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    notification = {
        "receiver": "ml-team",
        "status": "firing",
        "alerts": [{"labels": {"alertname": "MLFeatureDrift", "model": "m", "feature": "carat"}}],
    }
    assert post_json(f"{local.url('receiver')}/alerts", notification) == 200
    record = local.state_dir / "alerts.jsonl"
    assert [n["notification"] for n in read_notifications(record)] == [notification]
    assert alerts_main(local) == 0
    out = capsys.readouterr().out
    assert "notifications received (1" in out
    assert "firing   to ml-team    MLFeatureDrift" in out


def test_an_unknown_model_is_one_line_on_the_terminal_and_a_failed_run_in_prefect(
    local: stack.StackConfig, tmp_path: Path
) -> None:
    done = run_stack_cli(
        "monitor",
        "--model",
        "nope",
        "--date",
        "2026-03-01",
        config=local,
        MODEL_REGISTRY_URI=str(tmp_path / "registry"),
        DATA_LAKE_URI=str(tmp_path / "lake"),
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "model 'nope' has no version" in done.stderr
    printed = (done.stdout + done.stderr).strip().splitlines()
    assert len(printed) <= 3, printed
    request = urllib.request.Request(
        f"{local.url('prefect')}/api/flow_runs/filter",
        data=json.dumps({"flow_runs": {"name": {"any_": ["monitor-nope-2026-03-01"]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        (run,) = json.load(response)
    assert run["state"]["type"] == "FAILED"
    assert "model 'nope' has no version" in run["state"]["message"]
    # the traceback is in the run's log, sent before the process left (it skips Python's
    # teardown, not the drain of Prefect's log worker)
    request = urllib.request.Request(
        f"{local.url('prefect')}/api/logs/filter",
        data=json.dumps({"logs": {"flow_run_id": {"any_": [run["id"]]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        logs = [entry["message"] for entry in json.load(response)]
    assert any("Traceback" in m and "model 'nope' has no version" in m for m in logs), logs


def test_down_stops_every_process_of_the_stack(local: stack.StackConfig) -> None:
    assert stack_processes(local.state_dir)
    stopped = stack.down(local.state_dir)
    assert set(stopped) == set(stack.LOCAL_STACK)
    assert stack_processes(local.state_dir) == []
    assert stack.prefect_api_url(local.state_dir) is None

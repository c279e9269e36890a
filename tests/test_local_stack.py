"""`driftline stack up` runs the whole local stack: the Prometheus services, a receiver that keeps
Alertmanager's notifications, and the Prefect server every command records its runs in."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from driftline import runner, stack
from driftline.stack.alerts import main as alerts_main
from driftline.stack.receiver import read_notifications
from tests.conftest import REPO, run_cli, simulated_world
from tests.procs import free_port, wait_for

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


def test_alerts_right_after_a_push_waits_for_prometheus_and_shows_the_pending_alert(
    local: stack.StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from prometheus_client import CollectorRegistry, Gauge, delete_from_gateway, push_to_gateway

    registry = CollectorRegistry()
    labels = ["feature", "model_version"]
    Gauge("ml_feature_drift_detected", "", labels, registry=registry).labels("carat", "v1").set(1)
    score = Gauge("ml_feature_drift_score", "", [*labels, "test"], registry=registry)
    score.labels("carat", "v1", "ks").set(0.5)
    gateway, key = local.url("pushgateway"), {"model": "wolf"}
    push_to_gateway(gateway, job="ml_monitoring", registry=registry, grouping_key=key)
    try:
        assert alerts_main(local) == 0
    finally:
        delete_from_gateway(gateway, job="ml_monitoring", grouping_key=key)
    out = capsys.readouterr().out
    assert "waiting for Prometheus to scrape the latest push" in out
    (line,) = [line for line in out.splitlines() if "model=wolf" in line]
    assert "MLFeatureDrift" in line and "pending, fires at" in line
    shown = out.split("alerts in Prometheus (", 1)[1].split(")", 1)[0]
    with urllib.request.urlopen(shown, timeout=10) as page:
        assert page.status == 200


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
    # told as the runner ran it, the stack being up
    assert served(local, "monitor --model nope --date 2026-03-01")[-1].split(": exit ")[1][0] == "2"
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


# --- the warm runner: monitor and backfill in a process that has imported everything -----------

DAY = date(2026, 3, 1)


def runner_log(config: stack.StackConfig) -> list[str]:
    return (config.state_dir / "runner.log").read_text().splitlines()


def served(config: stack.StackConfig, command: str) -> list[str]:
    """The runner's log lines for the commands it ran: "pid N: driftline COMMAND: exit S in T s"."""
    return [line for line in runner_log(config) if f": driftline {command}: exit " in line]


def runner_ready(config: stack.StackConfig) -> int:
    """The runner's pid once it answers again (after a restart it imports everything anew)."""
    return wait_for(
        lambda: runner.ping(runner.socket_path(config.state_dir)),
        timeout_seconds=120,
        what="the runner to answer",
    )


@pytest.fixture
def world(tmp_path: Path, diamonds_registry: Path) -> dict[str, str]:
    root = simulated_world(tmp_path, diamonds_registry, start=DAY, days=3, rows_per_day=500, seed=3)
    return {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")}


def test_the_runner_runs_monitor_as_the_command_itself_would(
    local: stack.StackConfig, world: dict[str, str], tmp_path: Path
) -> None:
    cold_lake = tmp_path / "cold-lake"
    subprocess.run(["cp", "-a", world["DATA_LAKE_URI"], str(cold_lake)], check=True)
    args = ("monitor", "--date", str(DAY), "--no-push")
    warm = run_stack_cli(*args, config=local, **world)
    cold = run_stack_cli(
        *args, config=local, **{**world, "DATA_LAKE_URI": str(cold_lake), "DRIFTLINE_RUNNER": "off"}
    )
    assert warm.returncode == cold.returncode == 0, warm.stderr + cold.stderr
    summary = f"diamonds-price {DAY}: 500 rows, drifted: "
    assert warm.stdout.strip().splitlines()[-1] == cold.stdout.strip().splitlines()[-1]
    assert warm.stdout.strip().splitlines()[-1].startswith(summary)
    # the caller's environment reached the run: its lake, not the runner's
    result = f"monitoring/model=diamonds-price/batch_date={DAY}/result.json"
    warm_result = json.loads((Path(world["DATA_LAKE_URI"]) / result).read_text())
    cold_result = json.loads((cold_lake / result).read_text())
    assert warm_result == cold_result
    assert len(served(local, " ".join(args))) == 1  # served by the runner, once: the warm run


def test_the_runner_passes_on_exit_status_and_the_one_line_error(
    local: stack.StackConfig, world: dict[str, str]
) -> None:
    done = run_stack_cli("monitor", "--date", "2026-03-09", config=local, **world)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "2026-03-09" in done.stderr, done.stderr
    assert served(local, "monitor --date 2026-03-09")[-1].split(": exit ")[1].startswith("1 in")


def test_the_runner_declines_a_caller_whose_python_settings_differ(
    local: stack.StackConfig, world: dict[str, str]
) -> None:
    done = run_stack_cli(
        "monitor", "--date", str(DAY), "--no-push", config=local, PYTHONHASHSEED="7", **world
    )
    assert done.returncode == 0, done.stderr
    assert f"diamonds-price {DAY}: 500 rows" in done.stdout
    assert any("declined" in line and "PYTHONHASHSEED" in line for line in runner_log(local)), (
        runner_log(local)
    )


def test_the_runner_restarts_when_the_code_changes(
    local: stack.StackConfig, world: dict[str, str]
) -> None:
    """A `git pull` between two runs: the runner's imports are stale. It declines (the command
    runs itself, with the new code) and restarts, keeping its pid; the next run is served."""
    pid = runner_ready(local)
    module = REPO / "tasks" / "reports" / "numbers.py"  # imported by every run
    before = module.stat()
    args = ("monitor", "--date", str(DAY), "--no-push")
    try:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        done = run_stack_cli(*args, config=local, **world)
        assert done.returncode == 0, done.stderr
        assert any(f"{module} changed" in line for line in runner_log(local))
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    # restored: changed again for the restarted runner, which declines and restarts once more
    runner_ready(local)
    run_stack_cli(*args, config=local, **world)
    assert runner_ready(local) == pid
    runs = len(served(local, " ".join(args)))
    done = run_stack_cli(*args, config=local, **world)
    assert done.returncode == 0, done.stderr
    assert len(served(local, " ".join(args))) == runs + 1


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_bad_request_does_not_stop_the_runner(local: stack.StackConfig) -> None:
    pid = runner_ready(local)
    for garbage in (b"not json", b"{}", b'{"argv": ["monitor"]}'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(10)
            sock.connect(str(runner.socket_path(local.state_dir)))
            sock.send(garbage)
            reply = sock.recv(1 << 16)
            assert reply == b"" or set(json.loads(reply)) == {"refused"}, reply
    assert runner.ping(runner.socket_path(local.state_dir)) == pid
    assert "a request failed" in "\n".join(runner_log(local))


@contextlib.contextmanager
def backfill_in_the_runner(
    local: stack.StackConfig, registry: Path, tmp_path: Path, *, seed: int
) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """A 20-day backfill the runner serves: the caller's process, the runner's child running it,
    and the arguments, once that child exists."""
    pid = runner_ready(local)
    root = simulated_world(tmp_path, registry, start=DAY, days=20, rows_per_day=500, seed=seed)
    env = {**os.environ, "DATA_LAKE_URI": str(root / "lake"), "DRIFTLINE_STACK_DIR":
           str(local.state_dir), "MODEL_REGISTRY_URI": str(root / "registry")}  # fmt: skip
    argv = ["backfill", "--start", str(DAY), "--end", "2026-03-20", "--openmetrics",
            str(tmp_path / "history.om")]  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-m", "driftline", *argv],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as caller:
        (child,) = wait_for(
            lambda: children(pid), timeout_seconds=60, what="the runner's child", interval=0.05
        )
        yield caller, child, argv


def test_ctrl_c_stops_the_command_the_runner_runs(
    local: stack.StackConfig, diamonds_registry: Path, tmp_path: Path
) -> None:
    with backfill_in_the_runner(local, diamonds_registry, tmp_path, seed=4) as (
        caller,
        child,
        argv,
    ):
        caller.send_signal(signal.SIGINT)
        _, stderr = caller.communicate(timeout=120)
    assert caller.returncode == 130, stderr
    # the child reports its exit status, then ends: the kernel reaps it a moment after the reply
    wait_for(
        lambda: not Path(f"/proc/{child}").exists(),
        timeout_seconds=60,
        what=f"the runner's child {child} to end",
        interval=0.05,
    )
    assert served(local, " ".join(argv))[-1].split(": exit ")[1].startswith("130 in")


def test_a_command_whose_process_is_killed_says_so(
    local: stack.StackConfig, diamonds_registry: Path, tmp_path: Path
) -> None:
    pid = runner_ready(local)
    with backfill_in_the_runner(local, diamonds_registry, tmp_path, seed=5) as (caller, child, _):
        os.kill(child, signal.SIGKILL)
        _, stderr = caller.communicate(timeout=120)
    assert caller.returncode == 1
    assert f"runner process {child} ended without an exit status" in stderr, stderr
    assert runner.ping(runner.socket_path(local.state_dir)) == pid


def test_down_stops_every_process_of_the_stack(local: stack.StackConfig) -> None:
    assert stack_processes(local.state_dir)
    stopped = stack.down(local.state_dir)
    assert set(stopped) == set(stack.LOCAL_STACK)
    assert stack_processes(local.state_dir) == []
    assert stack.prefect_api_url(local.state_dir) is None

"""Faults with real processes: `driftline monitor` killed at chosen points, two runs of one day
at once, a Pushgateway down all night, Prometheus and the Pushgateway restarted, the lake gone
for a while, and the pipeline alerts those faults should raise.

A run stops at a point with `DRIFTLINE_FAULT_PAUSE_AT` (driftline/faults.py) and is killed there
with SIGKILL, together with the Prefect server it started (its own process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands, stack
from driftline.cli import main
from tasks import steps
from tasks.results import from_json
from tests.pushgateway_recorder import recording_pushgateway
from tests.stack_fixtures import REPO_ROOT, firing_alerts, free_port, prom_query, wait_for

MODEL = "diamonds-price"
START = date(2026, 3, 1)
DAY, OTHER_DAY = date(2026, 3, 2), date(2026, 3, 3)
PAUSED = "driftline: fault injection: paused at"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(diamonds_registry, root / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")}
    )
    commands.simulate(settings, model=MODEL, start=START, days=3, rows_per_day=200,
                      scenario="none", seed=5)  # fmt: skip
    return root


@pytest.fixture
def world(simulated: Path, tmp_path: Path) -> Path:
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    return tmp_path


def run_env(root: Path, pushgateway: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_LAKE_URI": str(root / "lake"),
        "MODEL_REGISTRY_URI": str(root / "registry"),
        "PUSHGATEWAY_URL": pushgateway,
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        **extra,
    }


@dataclass
class Run:
    """`driftline monitor` in a process group of its own, output in files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @classmethod
    def start(cls, env: dict[str, str], day: date, logs: Path, name: str) -> Run:
        out, err = logs / f"{name}.out", logs / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "driftline", "monitor", "--date", day.isoformat()],
                env=env,
                cwd=REPO_ROOT,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # the ephemeral Prefect server is its child: kill both
            )
        return cls(process, out, err)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_paused(self) -> None:
        def paused() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"run exited {self.process.returncode}:\n{self.stderr()}")
            return PAUSED in self.stderr()

        wait_for(paused, timeout_seconds=240, what="the run to pause", interval=0.2)

    def kill(self) -> None:
        """SIGKILL the run and everything it started; no handler, no finally runs."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        # the Prefect server child, if it outlived its parent for a moment
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=600)
        return code, self.stderr()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()


def day_dir(root: Path, day: date = DAY) -> Path:
    return root / "lake" / "monitoring" / f"model={MODEL}" / f"batch_date={day}"


def lock_file(root: Path, day: date = DAY) -> Path:
    return root / "lake" / "monitoring" / f"model={MODEL}" / ".locks" / f"batch_date={day}.lock"


def killed_at(point: str, env: dict[str, str], logs: Path, runs: list[Run]) -> Run:
    run = Run.start({**env, "DRIFTLINE_FAULT_PAUSE_AT": point}, DAY, logs, point)
    runs.append(run)
    run.wait_paused()
    run.kill()
    return run


# --- 1. crash safety ------------------------------------------------------------------------------


def test_a_run_killed_anywhere_leaves_the_whole_result_or_none_and_the_next_run_completes(
    world: Path, tmp_path: Path, runs: list[Run]
) -> None:
    lake = Lake.open(str(world / "lake"))
    result = day_dir(world) / "result.json"
    with recording_pushgateway() as gateway:
        env = run_env(world, gateway.url)

        killed_at("load-batch", env, tmp_path, runs)  # reading
        assert not result.exists() and lake.result_dates(MODEL) == []

        killed_at("write-temp", env, tmp_path, runs)  # result written aside, not moved yet
        assert not result.exists()
        (leftover,) = day_dir(world).iterdir()
        assert leftover.name.startswith(".tmp-") and leftover.name.endswith("-result.json")
        assert lake.result_dates(MODEL) == [], "a half-finished day is not listed as a result"
        assert lake.files(str(day_dir(world))) == [], "temporary files are never listed"
        assert lock_file(world).is_file(), "the dead run's lock stays until the next run"

        killed_at("push", env, tmp_path, runs)  # result in place, push not started
        written = from_json(result.read_bytes())
        assert (written.batch_date, written.n_rows) == (DAY, 200)
        assert sorted(p.name for p in day_dir(world).iterdir()) == ["report.html", "result.json"]
        assert gateway.requests == []

        final = Run.start(env, DAY, tmp_path, "final")
        runs.append(final)
        code, err = final.finish()
        assert code == 0, err
        assert "took over the lock" in final.stdout() and "is no longer running" in final.stdout()
        assert from_json(result.read_bytes()) == written, "the rerun completes the same day"
        assert sorted(p.name for p in day_dir(world).iterdir()) == ["report.html", "result.json"]
        assert not lock_file(world).exists()
        ((method, path, _),) = gateway.requests
        assert (method, path) == ("PUT", f"/metrics/job/ml_monitoring/model/{MODEL}")


# --- 2. concurrency ------------------------------------------------------------------------------


def listening_sockets(pids: set[int]) -> list[str]:
    """host:port of every TCP socket in LISTEN state that one of `pids` holds."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.append(f"{_address(address, width)}:{int(port, 16)}")
    return found


def _address(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return ".".join(str(b) for b in raw[::-1])
    words = [struct.pack("<I", struct.unpack(">I", raw[i : i + 4])[0]) for i in range(0, 16, 4)]
    packed = b"".join(words)
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in packed[12:])
    return "[" + packed.hex() + "]"


def process_group(pgid: int) -> set[int]:
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def test_one_run_per_model_and_day_others_in_parallel(
    world: Path, tmp_path: Path, runs: list[Run]
) -> None:
    with recording_pushgateway() as gateway:
        env = run_env(world, gateway.url)
        holder = Run.start({**env, "DRIFTLINE_FAULT_PAUSE_AT": "push"}, DAY, tmp_path, "holder")
        runs.append(holder)
        holder.wait_paused()
        # the paused run and its Prefect server listen on loopback only
        sockets = listening_sockets(process_group(holder.process.pid))
        assert sockets and all(s.startswith("127.0.0.1:") for s in sockets), sockets

        impatient = Run.start({**env, "DRIFTLINE_LOCK_WAIT_SECONDS": "0"}, DAY, tmp_path, "b")
        other_day = Run.start(env, OTHER_DAY, tmp_path, "other-day")
        patient = Run.start({**env, "DRIFTLINE_LOCK_WAIT_SECONDS": "600"}, DAY, tmp_path, "d")
        runs.extend([impatient, other_day, patient])

        code, err = impatient.finish()
        assert code == 1
        assert f"batch_date={DAY}.lock is held by monitor {MODEL} {DAY} (pid " in err
        assert f"pid {holder.process.pid} on " in err and "another run is writing" in err
        code, err = other_day.finish()
        assert code == 0, err
        assert (day_dir(world, OTHER_DAY) / "result.json").is_file()

        wait_for(
            lambda: "is being written by" in patient.stdout(),
            timeout_seconds=240,
            what="the patient run to wait for the lock",
        )
        assert patient.process.poll() is None
        holder.kill()
        code, err = patient.finish()
        assert code == 0, err
        assert "took over the lock" in patient.stdout()
        assert not lock_file(world).exists()
        pushed_days = sorted(path for method, path, _ in gateway.requests)
        assert len(pushed_days) == 2  # the other day and the patient run; never the holder


# --- 3. outages on a real stack ------------------------------------------------------------------


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[stack.StackConfig]:
    config = stack.StackConfig(
        state_dir=tmp_path / "stack",
        prometheus_port=free_port(),
        pushgateway_port=free_port(),
        alertmanager_port=free_port(),
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_for="2s",
        webhook_url=None,
    )
    stack.up(config, timeout_seconds=60)
    try:
        yield config
    finally:
        stack.down(config.state_dir)


def stop(config: stack.StackConfig, component: stack.Component) -> None:
    """Stop one component we started, by its pid (SIGTERM: the Pushgateway persists on exit)."""
    (status,) = [s for s in stack.status(config.state_dir) if s.name == component]
    assert status.pid is not None
    os.kill(status.pid, signal.SIGTERM)
    wait_for(
        lambda: (
            not any(s.is_running for s in stack.status(config.state_dir) if s.name == component)
        ),
        timeout_seconds=30,
        what=f"{component} to stop",
    )


def firing(config: stack.StackConfig, alertname: str) -> bool:
    return any(
        a["labels"]["alertname"] == alertname and a["labels"].get("model") == MODEL
        for a in firing_alerts(config.url("prometheus"))
    )


def scraped_rows(config: stack.StackConfig) -> list[str]:
    found = prom_query(config.url("prometheus"), f'ml_batch_rows{{model="{MODEL}"}}')
    return [sample["value"][1] for sample in found]


def put(config: stack.StackConfig, body: str) -> int:
    request = urllib.request.Request(
        f"{config.url('pushgateway')}/metrics/job/ml_monitoring/model/{MODEL}",
        data=body.encode(),
        method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def age_the_last_push(config: stack.StackConfig, *, seconds: float) -> None:
    """Move the persisted push_time_seconds back, as if the last push were `seconds` old.

    The Pushgateway stores each group's push time as a gauge in its persistence file, a
    protobuf double (8 bytes, little endian) that we find by the value it exposes.
    """
    body = urllib.request.urlopen(f"{config.url('pushgateway')}/metrics", timeout=10).read()
    (line,) = [
        raw
        for raw in body.decode().splitlines()
        if raw.startswith("push_time_seconds{") and f'model="{MODEL}"' in raw
    ]
    pushed = float(line.rsplit(" ", 1)[1])
    stop(config, "pushgateway")
    db = config.state_dir / "pushgateway" / "metrics.db"
    data = db.read_bytes()
    old = struct.pack("<d", pushed)
    assert data.count(old) == 1, "the push time is stored once, as a protobuf double"
    db.write_bytes(data.replace(old, struct.pack("<d", pushed - seconds)))
    stack.up(config, timeout_seconds=60)


@pytest.mark.e2e
def test_outages_are_retried_reported_and_recovered_and_alert(
    world: Path, own_stack: stack.StackConfig, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config = own_stack
    for key, value in run_env(world, config.url("pushgateway")).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DRIFTLINE_PUSH_RETRY_DELAYS", "0.2,0.2")
    result = day_dir(world) / "result.json"

    # the Pushgateway down all night: retried, the run fails clearly, the results are kept
    stop(config, "pushgateway")
    assert main(["monitor", "--date", DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert f"could not push to the Pushgateway at {config.url('pushgateway')} after 3 " in err
    assert f"results for {DAY} are saved in {result}" in err
    assert result.is_file()
    # back in the morning: the next run pushes
    stack.up(config, timeout_seconds=60)
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_for(lambda: scraped_rows(config) == ["200"], timeout_seconds=60, what="the scrape")

    # Prometheus and the Pushgateway restarted: the last values are served again
    stop(config, "prometheus")
    stop(config, "pushgateway")
    stack.up(config, timeout_seconds=60)
    wait_for(lambda: scraped_rows(config) == ["200"], timeout_seconds=60, what="a new scrape")
    assert not firing(config, "MLMonitoringPushFailing")

    # a push the Pushgateway rejects (the same series twice) fires MLMonitoringPushFailing ...
    assert put(config, "# TYPE ml_batch_rows gauge\nml_batch_rows 1\nml_batch_rows 2\n") == 400
    wait_for(
        lambda: firing(config, "MLMonitoringPushFailing"),
        timeout_seconds=60,
        what="MLMonitoringPushFailing to fire",
    )
    # ... until the next good push
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_for(
        lambda: not firing(config, "MLMonitoringPushFailing"),
        timeout_seconds=60,
        what="MLMonitoringPushFailing to resolve",
    )

    # no push for 27 h fires MLMonitoringStale, and the next run clears it
    age_the_last_push(config, seconds=27 * 3600)
    wait_for(
        lambda: firing(config, "MLMonitoringStale"),
        timeout_seconds=60,
        what="MLMonitoringStale to fire",
    )
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_for(
        lambda: not firing(config, "MLMonitoringStale"),
        timeout_seconds=60,
        what="MLMonitoringStale to resolve",
    )


def test_a_lake_gone_for_a_while_is_retried_and_the_run_completes(
    world: Path, tmp_path: Path, runs: list[Run]
) -> None:
    lake, away = world / "lake", world / "lake.unmounted"
    lake.rename(away)
    with recording_pushgateway() as gateway:
        run = Run.start(run_env(world, gateway.url), DAY, tmp_path, "outage")
        runs.append(run)
        wait_for(
            lambda: "the data lake root" in run.stdout() and "Retry 1/3" in run.stdout(),
            timeout_seconds=240,
            what="the first failed read to be retried",
        )
        away.rename(lake)  # the share is back before the retries run out
        code, err = run.finish()
        assert code == 0, err
        assert (day_dir(world) / "result.json").is_file()
        assert len(gateway.requests) == 1


def test_a_lake_gone_through_every_retry_fails_clearly_and_the_next_run_recovers(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    lake, away = world / "lake", world / "lake.unmounted"
    with recording_pushgateway() as gateway:
        for key, value in run_env(world, gateway.url).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(steps, "load_batch", steps.load_batch.with_options(
            retry_delay_seconds=0))  # fmt: skip
        lake.rename(away)
        assert main(["monitor", "--date", DAY.isoformat()]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"monitor {MODEL} {DAY}: the data lake or registry kept failing after 4" in err
        assert f"the data lake root {lake} is not there (unmounted or unreachable?)" in err
        assert "nothing new was written or pushed" in err
        assert not away.joinpath("monitoring").exists() and not lake.exists()
        away.rename(lake)
        assert main(["monitor", "--date", DAY.isoformat()]) == 0
        assert (day_dir(world) / "result.json").is_file() and len(gateway.requests) == 1


def test_stale_temporary_files_and_locks_do_not_need_cleaning_by_hand(world: Path) -> None:
    """What a SIGKILL leaves (see above), made by hand: the next writer clears it."""
    lake = Lake.open(str(world / "lake"))
    directory = day_dir(world)
    directory.mkdir(parents=True)
    (directory / ".tmp-0123-result.json").write_text('{"half": ')
    lock_file(world).parent.mkdir(parents=True)
    lock_file(world).write_text(
        json.dumps(
            {"host": os.uname().nodename, "pid": 999999999, "pid_started": None,
             "acquired_at": time.time(), "purpose": "monitor", "token": "dead"}
        )
    )  # fmt: skip
    taken: list[str] = []
    with lake.day_lock(MODEL, DAY, purpose="test", on_takeover=lambda o, why: taken.append(why)):
        assert list(directory.iterdir()) == []
        assert lock_file(world).read_text() != "dead"
    assert taken == ["pid 999999999 is no longer running"]
    assert not lock_file(world).exists()


def test_a_lock_held_elsewhere_is_taken_over_only_when_older_than_the_limit(world: Path) -> None:
    from core.settings import LockPolicy

    lake = Lake.open(str(world / "lake"))
    lock_file(world).parent.mkdir(parents=True)
    lock_file(world).write_text(
        json.dumps(
            {"host": "another-host", "pid": 1, "pid_started": None,
             "acquired_at": time.time() - 100, "purpose": "monitor on another host", "token": "t"}
        )
    )  # fmt: skip
    from core.errors import RunError

    with (
        pytest.raises(RunError, match=re.escape("held by monitor on another host (pid 1 on ")),
        lake.day_lock(MODEL, DAY, purpose="t", policy=LockPolicy(wait_seconds=0)),
    ):
        pass
    with lake.day_lock(
        MODEL, DAY, purpose="t", policy=LockPolicy(wait_seconds=0, stale_after_seconds=50)
    ):
        assert '"purpose": "t"' in lock_file(world).read_text()


def test_the_fault_hook_is_inert_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import faults

    monkeypatch.delenv(faults.ENV, raising=False)
    for point in faults.POINTS:
        faults.pause_point(point)  # returns at once
    monkeypatch.setenv(faults.ENV, "another-point")
    faults.pause_point("push")

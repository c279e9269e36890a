"""Faults with real processes: `driftline monitor` killed at chosen points, two runs of one day
at once, a Pushgateway down all night, Prometheus and the Pushgateway restarted, the lake gone
for a while, and the pipeline alerts those faults should raise.

A run stops at a point with `DRIFTLINE_FAULT_PAUSE_AT` (core/faults.py) and is killed there
with SIGKILL, together with the Prefect server it started (its own process group).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from data_lake.lake import Lake
from driftline.cli import main
from tasks.day import steps
from tasks.results.day import from_json
from tests.conftest import simulated_world
from tests.procs import Process, launched, listening_sockets, process_group, wait_for
from tests.pushgateway_recorder import failure_labels, only_failure, recording_pushgateway
from tests.stack_fixtures import (
    REPO_ROOT,
    LocalStack,
    firing_alerts,
    local_stack,
    loopback_config,
    prom_query,
)

MODEL = "diamonds-price"
START = date(2026, 3, 1)
DAY, OTHER_DAY = date(2026, 3, 2), date(2026, 3, 3)
PAUSED = "driftline: fault injection: paused at"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    return simulated_world(tmp_path_factory.mktemp("faults"), diamonds_registry, start=START,
                           days=3, rows_per_day=200, seed=5)  # fmt: skip


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


def start_run(env: dict[str, str], day: date, logs: Path, name: str) -> Process:
    """`driftline monitor` in a process group of its own (with the ephemeral Prefect server it
    starts), output in files."""
    return Process.start(
        [sys.executable, "-m", "driftline", "monitor", "--date", day.isoformat()],
        out=logs / f"{name}.out",
        err=logs / f"{name}.err",
        env=env,
        cwd=REPO_ROOT,
    )


def wait_paused(run: Process) -> None:
    def paused() -> bool:
        if not run.running():
            raise AssertionError(f"run exited {run.popen.returncode}:\n{run.stderr()}")
        return PAUSED in run.stderr()

    wait_for(paused, timeout_seconds=240, what="the run to pause", interval=0.2)


def finish(run: Process) -> tuple[int, str]:
    return run.wait(timeout_seconds=600), run.stderr()


@pytest.fixture
def runs() -> Iterator[list[Process]]:
    """The runs a test started; each is SIGKILLed with its group at the end if still there."""
    started: list[Process] = []
    yield started
    for run in started:
        run.kill()


def day_dir(root: Path, day: date = DAY) -> Path:
    return root / "lake" / "monitoring" / f"model={MODEL}" / f"batch_date={day}"


def lock_file(root: Path, day: date = DAY) -> Path:
    return root / "lake" / "monitoring" / f"model={MODEL}" / ".locks" / f"batch_date={day}.lock"


def killed_at(point: str, env: dict[str, str], logs: Path, runs: list[Process]) -> Process:
    run = start_run({**env, "DRIFTLINE_FAULT_PAUSE_AT": point}, DAY, logs, point)
    runs.append(run)
    wait_paused(run)
    run.kill()
    return run


# --- 1. crash safety ------------------------------------------------------------------------------


@pytest.mark.prefect
@pytest.mark.timeout(900)
def test_a_run_killed_anywhere_leaves_the_whole_result_or_none_and_the_next_run_completes(
    world: Path, tmp_path: Path, runs: list[Process]
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

        final = start_run(env, DAY, tmp_path, "final")
        runs.append(final)
        code, err = finish(final)
        assert code == 0, err
        assert "took over the lock" in final.stdout() and "is no longer running" in final.stdout()
        assert from_json(result.read_bytes()) == written, "the rerun completes the same day"
        assert sorted(p.name for p in day_dir(world).iterdir()) == ["report.html", "result.json"]
        assert not lock_file(world).exists()
        ((method, path, _),) = gateway.requests
        assert (method, path) == ("PUT", f"/metrics/job/ml_monitoring/model/{MODEL}")


# --- 2. concurrency ------------------------------------------------------------------------------


@pytest.mark.prefect
@pytest.mark.timeout(900)
def test_one_run_per_model_and_day_others_in_parallel(
    world: Path, tmp_path: Path, runs: list[Process]
) -> None:
    with recording_pushgateway() as gateway:
        env = run_env(world, gateway.url)
        holder = start_run({**env, "DRIFTLINE_FAULT_PAUSE_AT": "push"}, DAY, tmp_path, "holder")
        runs.append(holder)
        wait_paused(holder)
        # the paused run and its Prefect server listen on loopback only
        sockets = listening_sockets(process_group(holder.pid))
        assert sockets and all(s.startswith("127.0.0.1:") for s in sockets), sockets

        impatient = start_run({**env, "DRIFTLINE_LOCK_WAIT_SECONDS": "0"}, DAY, tmp_path, "b")
        other_day = start_run(env, OTHER_DAY, tmp_path, "other-day")
        patient = start_run({**env, "DRIFTLINE_LOCK_WAIT_SECONDS": "600"}, DAY, tmp_path, "d")
        runs.extend([impatient, other_day, patient])

        code, err = finish(impatient)
        assert code == 1
        assert f"batch_date={DAY}.lock is held by monitor {MODEL} {DAY} (pid " in err
        assert f"pid {holder.pid} on " in err and "another run is writing" in err
        code, err = finish(other_day)
        assert code == 0, err
        assert (day_dir(world, OTHER_DAY) / "result.json").is_file()

        wait_for(
            lambda: "is being written by" in patient.stdout(),
            timeout_seconds=240,
            what="the patient run to wait for the lock",
        )
        assert patient.running()
        holder.kill()
        code, err = finish(patient)
        assert code == 0, err
        assert "took over the lock" in patient.stdout()
        assert not lock_file(world).exists()
        # the other day and the patient run replaced the group, never the holder; the impatient
        # run only added its failure (before the patient run's PUT cleared it)
        puts = [path for method, path, _ in gateway.requests if method == "PUT"]
        assert len(puts) == 2
        failures = [failure_labels(*r) for r in gateway.requests if r[0] != "PUT"]
        assert [f["reason"] for f in failures] == ["error"]


# --- 3. outages on a real stack ------------------------------------------------------------------


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    config = loopback_config(
        tmp_path / "stack",
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_for="2s",
        webhook_url=None,
    )
    with local_stack(config) as started:
        yield started


def firing(local: LocalStack, alertname: str) -> bool:
    return any(
        a["labels"]["alertname"] == alertname and a["labels"].get("model") == MODEL
        for a in firing_alerts(local.url("prometheus"))
    )


def wait_alert(local: LocalStack, alertname: str, *, fired: bool) -> None:
    """Wait until Prometheus has `alertname` for the model firing (`fired`) or not any more."""
    wait_for(
        lambda: firing(local, alertname) == fired,
        timeout_seconds=60,
        what=f"{alertname} to {'fire' if fired else 'resolve'}",
    )


def scraped_rows(local: LocalStack) -> list[str]:
    found = prom_query(local.url("prometheus"), f'ml_batch_rows{{model="{MODEL}"}}')
    return [sample["value"][1] for sample in found]


def put(local: LocalStack, body: str) -> int:
    request = urllib.request.Request(
        f"{local.url('pushgateway')}/metrics/job/ml_monitoring/model/{MODEL}",
        data=body.encode(),
        method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def age_the_last_push(local: LocalStack, *, seconds: float) -> None:
    """Move the persisted push_time_seconds back, as if the last push were `seconds` old.

    The Pushgateway stores each group's push time as a gauge in its persistence file, a
    protobuf double (8 bytes, little endian) that we find by the value it exposes.
    """
    body = urllib.request.urlopen(f"{local.url('pushgateway')}/metrics", timeout=10).read()
    (line,) = [
        raw
        for raw in body.decode().splitlines()
        if raw.startswith("push_time_seconds{") and f'model="{MODEL}"' in raw
    ]
    pushed = float(line.rsplit(" ", 1)[1])
    local.stop("pushgateway")
    db = local.config.state_dir / "pushgateway" / "metrics.db"
    data = db.read_bytes()
    old = struct.pack("<d", pushed)
    assert data.count(old) == 1, "the push time is stored once, as a protobuf double"
    db.write_bytes(data.replace(old, struct.pack("<d", pushed - seconds)))
    local.start_stopped()


@pytest.mark.e2e
@pytest.mark.prefect
def test_outages_are_retried_reported_and_recovered_and_alert(
    world: Path, own_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    local = own_stack
    gateway_url = local.url("pushgateway")
    for key, value in run_env(world, gateway_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DRIFTLINE_PUSH_RETRY_DELAYS", "0.2,0.2")
    result = day_dir(world) / "result.json"

    # the Pushgateway down all night: retried, the run fails clearly, the results are kept
    local.stop("pushgateway")
    assert main(["monitor", "--date", DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert f"could not push to the Pushgateway at {gateway_url} after 3 " in err
    assert f"results for {DAY} are saved in {result}" in err
    assert result.is_file()
    # back in the morning: the next run pushes
    local.start_stopped()
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_for(lambda: scraped_rows(local) == ["200"], timeout_seconds=60, what="the scrape")

    # Prometheus and the Pushgateway restarted: the last values are served again
    local.stop("prometheus")
    local.stop("pushgateway")
    local.start_stopped()
    wait_for(lambda: scraped_rows(local) == ["200"], timeout_seconds=60, what="a new scrape")
    assert not firing(local, "MLMonitoringPushFailing")

    # a push the Pushgateway rejects (the same series twice) fires MLMonitoringPushFailing ...
    assert put(local, "# TYPE ml_batch_rows gauge\nml_batch_rows 1\nml_batch_rows 2\n") == 400
    wait_alert(local, "MLMonitoringPushFailing", fired=True)
    # ... until the next good push
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_alert(local, "MLMonitoringPushFailing", fired=False)

    # no push for 27 h fires MLMonitoringStale, and the next run clears it
    age_the_last_push(local, seconds=27 * 3600)
    wait_alert(local, "MLMonitoringStale", fired=True)
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    wait_alert(local, "MLMonitoringStale", fired=False)


@pytest.mark.prefect
def test_a_lake_gone_for_a_while_is_retried_and_the_run_completes(
    world: Path, tmp_path: Path, runs: list[Process]
) -> None:
    lake, away = world / "lake", world / "lake.unmounted"
    lake.rename(away)
    with recording_pushgateway() as gateway:
        run = start_run(run_env(world, gateway.url), DAY, tmp_path, "outage")
        runs.append(run)
        wait_for(
            lambda: "the data lake root" in run.stdout() and "Retry 1/3" in run.stdout(),
            timeout_seconds=240,
            what="the first failed read to be retried",
        )
        away.rename(lake)  # the share is back before the retries run out
        code, err = finish(run)
        assert code == 0, err
        assert (day_dir(world) / "result.json").is_file()
        assert len(gateway.requests) == 1


@pytest.mark.prefect
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
        assert "no result was written or pushed" in err
        assert not away.joinpath("monitoring").exists() and not lake.exists()
        # only the failure is pushed, after the last attempt, beside the last good gauges
        assert only_failure(gateway) == {"model": MODEL, "model_version": "v1",
                                         "reason": "storage"}  # fmt: skip
        away.rename(lake)
        assert main(["monitor", "--date", DAY.isoformat()]) == 0
        assert (day_dir(world) / "result.json").is_file()
        assert [method for method, _, _ in gateway.requests] == ["POST", "PUT"]


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


def test_the_fault_hook_pauses_only_at_the_point_it_is_named_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from core import faults

    # called in the test itself: a wrong pause hangs it until pytest-timeout fails it, however
    # slow the machine, where a race against a fixed delay could fail a correct hook
    monkeypatch.delenv(faults.ENV, raising=False)
    for point in faults.POINTS:
        faults.pause_point(point)  # unset, it goes on
    monkeypatch.setenv(faults.ENV, "another-point")
    faults.pause_point("push")  # named for another point, it goes on
    assert capsys.readouterr().err == ""

    # named, it stops there for good: it says where and waits to be killed
    script = "from core import faults; faults.pause_point('push'); print('went on')"
    env = {**os.environ, faults.ENV: "push"}
    with launched([sys.executable, "-c", script], out=tmp_path / "out", err=tmp_path / "err",
                  env=env, cwd=REPO_ROOT) as paused:  # fmt: skip
        said = f"{PAUSED} push (pid {paused.pid})"
        wait_for(lambda: said in paused.stderr(), timeout_seconds=60, what="the pause line",
                 tolerating=(OSError,))  # fmt: skip
        assert paused.running()
        paused.kill()
    assert "went on" not in paused.stdout()

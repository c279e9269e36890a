"""One writer per model and day on S3, across processes and machines: the lake's lock is a
conditional PUT (`If-None-Match: *`), a stale lock is replaced with `If-Match: <its ETag>` and
released with a conditional DELETE (data_lake/s3_lock.py), against moto's S3 server on loopback
(tests/s3.py). A store that does not honour the conditions gets today's best effort and a warning.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.errors import RunError
from core.settings import LockPolicy, load_settings
from data_lake import lock, s3_lock
from data_lake.lake import Lake
from data_lake.lock import LockOwner
from model_registry.registry import Registry
from tasks.day import engine as monitoring
from tasks.day import inputs
from tasks.results.day import to_json
from tests import procs
from tests.s3 import (
    REPO,
    S3Bucket,
    s3_fixture,  # noqa: F401  (the fixture s3)
    s3_server_fixture,  # noqa: F401  (the fixture s3_server)
)
from tests.test_s3_lake import (
    MODEL,
    START,
    energy_files_fixture,  # noqa: F401  (the fixture energy_files)
    energy_world,
)

pytestmark = pytest.mark.e2e

DAY = date(2026, 5, 2)
LOCK_KEY = f"lake/monitoring/model={MODEL}/.locks/batch_date={DAY}.lock"


@pytest.fixture(autouse=True)
def _probe_each_bucket_afresh() -> Iterator[None]:
    s3_lock._probed.clear()
    yield
    s3_lock._probed.clear()


def lake_of(s3: S3Bucket) -> Lake:
    return Lake.open(s3.uri("lake"))


def stale_owner(**changes: Any) -> bytes:
    owner = {
        "host": "another-host",
        "pid": 1,
        "pid_started": None,
        "acquired_at": time.time() - 7 * 3600,
        "purpose": "monitor on another host",
        "token": "stale",
        **changes,
    }
    return json.dumps(owner).encode()


def test_the_s3_server_listens_on_loopback_only(s3: S3Bucket) -> None:
    process = s3.server.process
    sockets = procs.listening_sockets(procs.process_group(process.pid))
    assert sockets == [f"127.0.0.1:{s3.server.port}"], sockets


def test_the_lock_is_created_once_refused_to_a_second_run_and_released(s3: S3Bucket) -> None:
    lake = lake_of(s3)
    wait_none = LockPolicy(wait_seconds=0)
    with lake.day_lock(MODEL, DAY, purpose="first", policy=wait_none) as held:
        assert held.store is not None and held.etag, "S3 takes the conditional path"
        assert json.loads(s3.read(LOCK_KEY))["purpose"] == "first"
        with (
            pytest.raises(RunError) as refused,
            lake.day_lock(MODEL, DAY, purpose="second", policy=wait_none),
        ):
            pass
        message = str(refused.value)
        assert message.startswith(f"s3://{s3.name}/{LOCK_KEY} is held by first (pid {os.getpid()}")
        assert "another run is writing the same model and batch day; waited 0 s" in message
        assert json.loads(s3.read(LOCK_KEY))["purpose"] == "first", "the refused run wrote nothing"
    assert LOCK_KEY not in s3.keys(""), "released"
    assert [k for k in s3.keys("") if ".probe-" in k] == [], "the probe object is removed"


def test_keys_in_the_uri_reach_the_lock_and_are_never_shown(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    secret = "uri-secret-0123"
    lake = Lake.open(s3.uri("lake").replace("s3://", f"s3://uri-key:{secret}@"))
    with lake.day_lock(MODEL, DAY, purpose="first") as held:
        assert held.store is not None, "botocore signed with the URI's keys"
        with (
            pytest.raises(RunError) as refused,
            lake.day_lock(MODEL, DAY, purpose="second", policy=LockPolicy(wait_seconds=0)),
        ):
            pass
    assert str(refused.value).startswith(f"s3://{s3.name}/{LOCK_KEY} is held by first")
    assert secret not in str(refused.value)


def test_a_bucket_that_is_not_there_fails_the_lock_naming_it(s3: S3Bucket) -> None:
    lake = Lake.open(s3.uri("lake").replace(f"s3://{s3.name}/", "s3://no-such-bucket-here/"))
    with (
        pytest.raises(OSError, match=r"s3://no-such-bucket-here/lake/monitoring/.*NoSuchBucket"),
        lake.day_lock(MODEL, DAY, purpose="t", policy=LockPolicy(wait_seconds=0)),
    ):
        pass


def test_a_stale_lock_is_replaced_only_if_it_is_still_the_one_judged_stale(s3: S3Bucket) -> None:
    lake = lake_of(s3)
    s3.put(LOCK_KEY, stale_owner())
    taken: list[str] = []
    with lake.day_lock(MODEL, DAY, purpose="taker", on_takeover=lambda _o, why: taken.append(why)):
        assert json.loads(s3.read(LOCK_KEY))["purpose"] == "taker"
    assert taken == ["it is older than 21600 s"]

    # a taker whose view is out of date: the lock changed after it read it, so If-Match fails
    store, why_not = s3_lock.conditional_store(lake, f"{s3.name}/{LOCK_KEY.rsplit('/', 1)[0]}")
    assert store is not None and why_not is None
    path = f"{s3.name}/{LOCK_KEY}"
    s3.put(LOCK_KEY, stale_owner())
    seen = store.read(path)
    assert seen is not None
    s3.put(LOCK_KEY, stale_owner(token="fresh", acquired_at=time.time()))  # another run, just now
    assert store.replace(path, b"mine", seen.etag) is None
    assert json.loads(s3.read(LOCK_KEY))["token"] == "fresh"
    # and a release never deletes a lock that is no longer the one it wrote
    assert store.delete(path, seen.etag) is False
    assert json.loads(s3.read(LOCK_KEY))["token"] == "fresh"


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(s3: S3Bucket) -> None:
    lake = lake_of(s3)
    s3.put(
        LOCK_KEY, stale_owner(host=socket.gethostname(), pid=999_999_999, acquired_at=time.time())
    )
    taken: list[str] = []
    with lake.day_lock(MODEL, DAY, purpose="rerun", on_takeover=lambda _o, why: taken.append(why)):
        pass
    assert taken == ["pid 999999999 is no longer running"]
    assert LOCK_KEY not in s3.keys("")


class StepClock:
    """The lock's clock, advanced only by its own sleeps: how long it waits is counted in its
    polls, never in how fast the machine answers them."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    time = staticmethod(time.time)  # the holder's age stays real


def test_a_lock_held_on_another_host_is_waited_for_then_refused(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = lake_of(s3)
    s3.put(LOCK_KEY, stale_owner(acquired_at=time.time() - 60))
    clock = StepClock()
    monkeypatch.setattr(lock, "time", clock)
    waited: list[LockOwner | None] = []
    with (
        pytest.raises(RunError, match=r"is held by monitor on another host \(pid 1 on another-h"),
        lake.day_lock(
            MODEL, DAY, purpose="t", policy=LockPolicy(wait_seconds=1, poll_seconds=0.1),
            on_wait=waited.append,
        ),
    ):  # fmt: skip
        pass
    assert clock.now >= 1, "it refused before its wait was up"
    assert [w.purpose if w else None for w in waited] == ["monitor on another host"]


def ignore_conditions(client: Any, operation: str = "") -> None:
    """Make `client` talk to a store that ignores conditional headers (on `operation`, e.g.
    "DeleteObject", or on every request): drop them before the request is signed."""

    def drop(request: Any, **_: Any) -> None:
        for header in ("If-None-Match", "If-Match"):
            if header in request.headers:
                del request.headers[header]

    client.meta.events.register_first(f"before-sign.s3{'.' + operation if operation else ''}", drop)


def test_a_store_without_conditional_deletes_keeps_the_conditional_lock(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = s3_lock._client

    def client_without_conditional_deletes(options: Any) -> Any:
        client = made(options)
        ignore_conditions(client, "DeleteObject")
        return client

    monkeypatch.setattr(s3_lock, "_client", client_without_conditional_deletes)
    lake = lake_of(s3)
    with caplog.at_level(logging.WARNING, logger="driftline.lock"):
        with lake.day_lock(MODEL, DAY, purpose="first") as held:
            assert held.store is not None and not held.store.deletes_conditionally
        assert LOCK_KEY not in s3.keys(""), "our own lock is released: read, compare, delete"
        with lake.day_lock(MODEL, DAY, purpose="second"):
            s3.put(LOCK_KEY, stale_owner(token="fresh", acquired_at=time.time()))  # taken over
        assert json.loads(s3.read(LOCK_KEY))["token"] == "fresh", "a lock no longer ours stays"
    assert caplog.records == [], "the conditional lock, no warning"


def test_a_store_that_ignores_conditional_writes_gets_best_effort_and_a_warning(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = s3_lock._client

    def careless_client(options: Any) -> Any:
        client = made(options)
        ignore_conditions(client)
        return client

    monkeypatch.setattr(s3_lock, "_client", careless_client)
    monkeypatch.setattr("data_lake.lock._warned", set())
    lake = lake_of(s3)
    at_once = LockPolicy(wait_seconds=0)
    with (
        caplog.at_level(logging.WARNING, logger="driftline.lock"),
        lake.day_lock(MODEL, DAY, purpose="first", policy=at_once) as held,
    ):
        assert held.store is None, "no conditional path on a store that ignores it"
        with (
            pytest.raises(RunError, match="is held by first"),
            lake.day_lock(MODEL, DAY, purpose="second", policy=at_once),
        ):
            pass  # best effort still refuses a run that comes later
    (warning,) = [r.getMessage() for r in caplog.records]
    assert (
        f"the lake's lock at s3://{s3.name}/lake/monitoring/model={MODEL}/.locks is best effort"
        in warning
    )
    assert (
        f"the store at {s3.server.endpoint} does not honour conditional writes: a PUT with "
        "If-None-Match: * over an existing object was carried out, where S3 answers 412"
    ) in warning
    assert "two runs of the same model and day that start at the same moment can both" in warning
    assert [k for k in s3.keys("") if ".probe-" in k] == []


def test_without_botocore_the_lock_says_how_to_get_the_conditional_writes(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)  # import botocore -> ImportError
    monkeypatch.setattr("data_lake.lock._warned", set())
    with (
        caplog.at_level(logging.WARNING, logger="driftline.lock"),
        lake_of(s3).day_lock(MODEL, DAY, purpose="t") as held,
    ):
        assert held.store is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "botocore is not installed (pip install 'driftline[s3]' adds it)" in warning


# --- two processes racing for one model and day --------------------------------------------------

REFUSE_ROUNDS, TAKEOVER_ROUNDS, WAIT_ROUNDS = 24, 12, 4


@pytest.mark.timeout(300)
def test_two_processes_racing_for_one_day_one_writes_the_other_refuses_or_waits(
    s3: S3Bucket, energy_files: Path, tmp_path: Path
) -> None:
    env = energy_world(s3, energy_files, days=3, rows_per_day=400)
    settings = load_settings(env)
    lake = Lake.open(settings.data_lake_uri)
    context = inputs.load_model_context(Registry.open(settings.model_registry_uri), MODEL)
    expected = to_json(monitoring.run_day(lake, context, DAY, settings).result)  # a single run's
    control = tmp_path / "race"
    control.mkdir()
    racers = {}
    with contextlib.ExitStack() as stack:
        for me, peer in (("a", "b"), ("b", "a")):
            argv = [sys.executable, "-m", "tests.s3", "race", "--model", MODEL,
                    "--date", DAY.isoformat(), "--me", me, "--peer", peer,
                    "--control", str(control)]  # fmt: skip
            logs = {"out": tmp_path / f"{me}.out", "err": tmp_path / f"{me}.err"}
            started = procs.launched(argv, **logs, env={**os.environ, **env}, cwd=REPO)
            racers[me] = stack.enter_context(started)
        for me, racer in racers.items():
            procs.wait_for(
                lambda me=me, racer=racer: _alive(racer) and (control / f"{me}-ready").exists(),
                timeout_seconds=120, what=f"racer {me} to be ready",
            )  # fmt: skip
        plan = (
            [("refuse", 0.0)] * REFUSE_ROUNDS
            + [("takeover", 0.0)] * TAKEOVER_ROUNDS
            + [("wait", 240.0)] * WAIT_ROUNDS  # a ceiling: the holder lets go once it is waited for
        )
        records = []
        for number, (kind, wait) in enumerate(plan):
            if kind == "takeover":  # both find a lock abandoned on another machine
                s3.put(LOCK_KEY, stale_owner())
            go = control / f"go-{number}.json"
            go.with_suffix(".tmp").write_text(json.dumps({"number": number, "wait_seconds": wait}))
            go.with_suffix(".tmp").rename(go)
            pair = [control / f"{me}-{number}.json" for me in racers]
            procs.wait_for(
                lambda pair=pair: all(_alive(r) for r in racers.values())
                and all(p.exists() for p in pair),
                timeout_seconds=240, what=f"round {number}", interval=0.01,
            )  # fmt: skip
            records.append((kind, [json.loads(p.read_text()) for p in pair]))
        (control / "stop").write_text("")
        for racer in racers.values():
            racer.wait(timeout_seconds=30)

    figures: Counter[str] = Counter()
    for kind, pair in records:
        outcomes = sorted(r["outcome"] for r in pair)
        if kind == "wait":
            assert outcomes == ["wrote", "wrote"], pair  # one after the other
            figures["wait rounds where the second run waited"] += any(r["waited"] for r in pair)
        else:
            assert outcomes == ["refused", "wrote"], pair  # exactly one writes
            (refused,) = [r for r in pair if r["outcome"] == "refused"]
            (winner,) = [r for r in pair if r["outcome"] == "wrote"]
            assert (
                f"is held by race {winner['who']} round {winner['round']} (pid "
                in refused["message"]
            )
            assert "another run is writing the same model and batch day" in refused["message"]
            if kind == "takeover":
                assert winner["took_over"] == ["it is older than 21600 s"], pair
                figures["takeovers won by exactly one"] += 1
            figures[f"{kind} rounds: one wrote, one refused"] += 1
        held = sorted((r["acquired"], r["released"]) for r in pair if r["outcome"] == "wrote")
        for (_, first_end), (second_start, _) in itertools.pairwise(held):
            assert first_end <= second_start, f"two runs held the lock at once: {pair}"
    print(dict(figures))
    assert figures["refuse rounds: one wrote, one refused"] == REFUSE_ROUNDS
    assert figures["takeover rounds: one wrote, one refused"] == TAKEOVER_ROUNDS
    assert figures["wait rounds where the second run waited"] == WAIT_ROUNDS

    # nothing half-written, nothing left: the day's result is a single run's, byte for byte
    day_prefix = f"lake/monitoring/model={MODEL}/batch_date={DAY}/"
    assert s3.keys(day_prefix) == [day_prefix + "result.json"]
    assert s3.read(day_prefix + "result.json") == expected
    assert s3.keys(f"lake/monitoring/model={MODEL}/.locks/") == []
    assert lake.result_dates(MODEL) == [DAY]
    assert START <= DAY


def _alive(process: procs.Process) -> bool:
    if not process.running():
        raise AssertionError(
            f"{process.argv[3:6]} exited {process.popen.returncode}:\n{process.log_tail()}"
        )
    return True

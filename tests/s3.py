"""A local S3: moto's server on a free loopback port, started and stopped by its pid, and the
worker processes the object-storage tests run against it.

- `moto_server(directory)`: the server (`python -m tests.s3 serve --port N`), listening on
  127.0.0.1 only, stopped by its pid at the end; `s3_server` is that server for the session and
  `s3` a fresh bucket of it for one test (the test must be marked e2e), with fake credentials in
  the test process' environment only (`AWS_ACCESS_KEY_ID`, ...; nothing is written to a file).
- `S3Bucket.uri(prefix)`: the pyarrow URI a user would set as DATA_LAKE_URI or
  MODEL_REGISTRY_URI, `s3://bucket/prefix?endpoint_override=127.0.0.1:PORT&scheme=http`.
- `python -m tests.s3 nightly ...`: the nightly run's work for one day as plain functions
  (read, compute, take the day's lock, write the result), for the crash tests: with
  DRIFTLINE_FAULT_PAUSE_AT=write-temp it stops with the result made, before its upload.
- `python -m tests.s3 race ...`: one side of the lock race (tests/test_s3_lock.py).

moto checks a PUT's `If-None-Match` / `If-Match` and stores the object in two separate steps, on
a thread per request, so two conditional PUTs of one key that arrive together can both pass its
check; Amazon S3 decides them atomically. The server here hands moto one request at a time, which
makes its conditional writes atomic as S3's are: the race test then tests driftline's lock, not
moto's threads.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests import procs

REPO = Path(__file__).resolve().parents[1]
# fake keys for the test process and its children only; moto accepts any
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "driftline-test",
    "AWS_SECRET_ACCESS_KEY": "driftline-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # never ask the EC2 metadata address (off loopback) for credentials or a region
    "AWS_EC2_METADATA_DISABLED": "true",
}


# --- the server ------------------------------------------------------------------------------


class _OneAtATime:
    """A WSGI app that hands the wrapped app one request at a time (see the module's doc)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


def serve(port: int) -> None:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


@dataclass(frozen=True)
class S3Server:
    process: procs.Process
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A botocore S3 client of this server, with the fake keys."""
        return _client(self.endpoint)

    def bucket(self, name: str | None = None) -> S3Bucket:
        name = name or f"driftline-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return S3Bucket(self, name)


@dataclass(frozen=True)
class S3Bucket:
    server: S3Server
    name: str

    def uri(self, prefix: str) -> str:
        """The pyarrow URI of `prefix` in this bucket, as DATA_LAKE_URI / MODEL_REGISTRY_URI."""
        return (
            f"s3://{self.name}/{prefix}?endpoint_override=127.0.0.1:{self.server.port}&scheme=http"
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key under `prefix`, hidden ones included; not the empty "folder/"
        markers pyarrow's S3 filesystem keeps for a folder whose last file it deleted."""
        client, found, token = self.server.client(), [], None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = client.list_objects_v2(Bucket=self.name, Prefix=prefix, **extra)
            found += [i["Key"] for i in page.get("Contents", []) if not i["Key"].endswith("/")]
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def read(self, key: str) -> bytes:
        with self.server.client().get_object(Bucket=self.name, Key=key)["Body"] as body:
            return bytes(body.read())

    def put(self, key: str, payload: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=payload)


@functools.cache
def _client(endpoint: str) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


@contextlib.contextmanager
def moto_server(directory: Path) -> Iterator[S3Server]:
    """moto's S3 on a free loopback port, listening when entered, stopped by its pid after."""
    port = procs.free_port()
    argv = [sys.executable, "-m", "tests.s3", "serve", "--port", str(port)]
    env = {**os.environ, **FAKE_AWS_ENV}
    with procs.launched(argv, out=directory / "moto.log", env=env, cwd=REPO) as process:
        process.wait_listening(port, timeout_seconds=60)
        yield S3Server(process, port)


def _require_e2e(request: pytest.FixtureRequest) -> None:
    """The test running now (tests/conftest.py records its markers) must be marked e2e."""
    if procs.current_test_markers is not None and "e2e" not in procs.current_test_markers:
        pytest.fail(f"{request.node.nodeid} uses an S3 server: mark it @pytest.mark.e2e")


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    _require_e2e(request)
    with moto_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(name="s3")
def s3_fixture(
    request: pytest.FixtureRequest, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> S3Bucket:
    """A fresh bucket of the session's S3 server; fake keys in this process' environment."""
    _require_e2e(request)
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return s3_server.bucket()


# --- worker processes ------------------------------------------------------------------------


def nightly(model: str, day: date) -> bytes:
    """The nightly run's work for `day` as plain functions, with the settings of the
    environment: its result, written under the day's lock (paused at `write-temp` on demand)."""
    from core import faults
    from core.settings import load_settings
    from data_lake.lake import Lake
    from model_registry.registry import Registry
    from tasks.day import engine as monitoring
    from tasks.day import inputs
    from tasks.results.day import to_json

    settings = load_settings(push=False)
    lake = Lake.open(settings.data_lake_uri)
    context = inputs.load_model_context(Registry.open(settings.model_registry_uri), model)
    payload = to_json(monitoring.run_day(lake, context, day, settings).result)
    with lake.day_lock(model, day, purpose=f"monitor {model} {day}", policy=settings.lock_policy):
        lake.write_bytes(
            lake.result_path(model, day),
            payload,
            before_commit=lambda: faults.pause_point("write-temp"),
        )
    return payload


@dataclass(frozen=True)
class RaceRound:
    """What the test asks of round `number`: `wait_seconds` for the lock (0: refuse at once)."""

    number: int
    wait_seconds: float


def race(model: str, day: date, me: str, peer: str, control: Path) -> None:
    """One racer: for each round the test announces (`control/go-N.json`), try to take the day's
    lock at once, as the nightly run does, and record what happened (`control/<me>-N.json`).

    The first to take the lock writes the day's result and keeps the lock until its peer has met
    it: in a round that refuses (wait 0) until the peer has recorded its attempt, in a round that
    waits until the peer says it is waiting (`control/<peer>-N.waiting`). So both always meet,
    however slow either process is. Every record has the interval the lock was held, to show that
    two never overlap.
    """
    from core.errors import RunError
    from core.settings import LockPolicy, load_settings
    from data_lake.lake import Lake
    from data_lake.lock import LockOwner
    from model_registry.registry import Registry
    from tasks.day import engine as monitoring
    from tasks.day import inputs
    from tasks.results.day import to_json

    settings = load_settings(push=False)
    lake = Lake.open(settings.data_lake_uri)
    context = inputs.load_model_context(Registry.open(settings.model_registry_uri), model)
    payload = to_json(monitoring.run_day(lake, context, day, settings).result)
    (control / f"{me}-ready").write_text("")
    number = 0
    while True:
        go = control / f"go-{number}.json"
        while not go.exists():
            if (control / "stop").exists():
                return
            time.sleep(0.002)
        spec = RaceRound(**json.loads(go.read_text()))
        record: dict[str, Any] = {"round": number, "who": me}
        policy = LockPolicy(wait_seconds=spec.wait_seconds, poll_seconds=0.05)
        waited: list[LockOwner | None] = []
        taken: list[str] = []
        waiting = control / f"{me}-{number}.waiting"

        def on_wait(holder: LockOwner | None, waited: list[LockOwner | None] = waited,
                    waiting: Path = waiting) -> None:  # fmt: skip
            waited.append(holder)
            waiting.write_text("")

        try:
            with lake.day_lock(
                model,
                day,
                purpose=f"race {me} round {number}",
                policy=policy,
                on_wait=on_wait,
                on_takeover=lambda _holder, why, taken=taken: taken.append(why),
            ):
                record["acquired"] = time.time()
                lake.write_bytes(lake.result_path(model, day), payload)
                met = control / f"{peer}-{number}.{'json' if spec.wait_seconds == 0 else 'waiting'}"
                while not waited and not met.exists() and not (control / "stop").exists():
                    time.sleep(0.002)  # the first holder; the second, having waited, goes on
                record["released"] = time.time()
            record["outcome"] = "wrote"
        except RunError as exc:
            record["outcome"] = "refused"
            record["message"] = str(exc)
        record["waited"], record["took_over"] = bool(waited), taken
        out = control / f"{me}-{number}.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.rename(out)
        number += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.s3")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("nightly")
    p.add_argument("--model", required=True)
    p.add_argument("--date", type=date.fromisoformat, required=True)
    p = sub.add_parser("race")
    p.add_argument("--model", required=True)
    p.add_argument("--date", type=date.fromisoformat, required=True)
    p.add_argument("--me", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--control", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port)
    elif args.command == "nightly":
        nightly(args.model, args.date)
    else:
        race(args.model, args.date, args.me, args.peer, args.control)


if __name__ == "__main__":
    main()

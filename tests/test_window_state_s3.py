"""The nightly run on a local S3 (moto's server, in this process, counting every request it
answers): with the state the night before left, a night with a 30-day window stays within its
request budget and reads only the partitions that are new."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from data_lake.lake import Lake
from model_registry.registry import Registry
from tasks.day.engine import monitor_and_write
from tasks.day.inputs import load_model_context
from tests import procs
from tests.s3 import FAKE_AWS_ENV, _client
from tests.test_window_state import MODEL, World, _batch, _labels, night

pytestmark = pytest.mark.e2e

LAKE_BUDGET = 50  # requests of one night on the lake (docs/scaling.md)


class Recorder:
    """A WSGI wrapper that records each request's method, path and query."""

    def __init__(self, app: Any) -> None:
        self.app, self.lock, self.seen = app, threading.Lock(), []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            self.seen.append(
                (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""))
            )
        return self.app(environ, start_response)

    def take(self) -> list[tuple[str, str, str]]:
        with self.lock:
            taken, self.seen = self.seen, []
        return taken


@pytest.fixture(name="counted_s3")
def counted_s3_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Recorder]]:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    recorder = Recorder(DomainDispatcherApplication(create_backend_app))
    port = procs.free_port()
    server = make_server("127.0.0.1", port, recorder, threaded=True,
                         request_handler=MotoRequestHandler)  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _client(f"http://127.0.0.1:{port}").create_bucket(Bucket="window")
        yield f"127.0.0.1:{port}", recorder
    finally:
        server.shutdown()


def _on_lake(request: tuple[str, str, str]) -> bool:
    _, path, query = request
    return path.startswith("/window/lake/") or "prefix=lake" in query


def test_a_night_after_the_night_before_stays_within_its_budget_and_reads_only_new_files(
    counted_s3: tuple[str, Recorder], tmp_path: Any
) -> None:
    endpoint, recorder = counted_s3
    query = f"?endpoint_override={endpoint}&scheme=http"
    world = World(tmp_path)
    world.lake_uri, world.registry_uri = f"s3://window/lake{query}", f"s3://window/registry{query}"
    world.lake = Lake.open(world.lake_uri)
    world.settings = dataclasses.replace(world.settings, data_lake_uri=world.lake_uri,
                                         model_registry_uri=world.registry_uri,
                                         performance_window_days=30)  # fmt: skip
    world.register()
    for n in range(32):
        frame = _batch(night(n), seed=n)
        world.write_batch(night(n), frame)
        for delay, rows in ((1, frame.iloc[:20]), (2, frame.iloc[20:40]), (3, frame.iloc[40:])):
            world.write_labels(night(n) + timedelta(days=delay), f"batch-{night(n)}.parquet",
                               _labels(rows, n))  # fmt: skip
    registry = Registry.open(world.registry_uri)

    def nightly(n: int) -> bytes:
        context = load_model_context(registry, MODEL)
        monitor_and_write(world.lake, context, night(n), world.settings)
        return world.lake.read_bytes(world.lake.result_path(MODEL, night(n))) or b""

    nightly(29)  # its estimate of batch 29 is what night 31 checks that batch's band against
    nightly(30)
    recorder.take()
    incremental = nightly(31)
    requests = [r for r in recorder.take() if _on_lake(r)]
    assert len(requests) <= LAKE_BUDGET, sorted(requests)
    label_reads = {path for method, path, _ in requests if method == "GET" and "/labels/" in path}
    assert label_reads and all(f"arrival_date={night(32)}/" in p for p in label_reads), label_reads
    # of the scored batches its own only: the one whose band it checks has its estimate
    scored_reads = {path for method, path, _ in requests if method == "GET" and "/scored/" in path}
    assert scored_reads == {
        f"/window/lake/scored/model={MODEL}/batch_date={night(31)}/part-0.parquet"
    }
    listings = [q for method, _, q in requests if method == "GET" and "list-type" in q]
    assert not any("arrival_date" in q for q in listings), (
        "one listing of the labels, not one per day"
    )

    world.lake.fs.delete_file(world.lake.window_state_path(MODEL))
    recorder.take()
    assert nightly(31) == incremental  # a night reading its whole window writes the same bytes
    full = [r for r in recorder.take() if _on_lake(r)]
    assert len(full) > 3 * len(requests)

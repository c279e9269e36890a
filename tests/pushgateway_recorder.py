"""A stand-in Pushgateway for unit-level CLI tests: records what arrives, answers 200."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.parser import text_string_to_metric_families

FAILURE = "ml_monitoring_last_failure_timestamp_seconds"


@dataclass
class Recorded:
    url: str = ""
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)


@contextmanager
def recording_pushgateway() -> Iterator[Recorded]:
    recorded = Recorded()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorded.requests.append((self.command, self.path, self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = do_DELETE = _record

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as recorded.url:
        yield recorded


def failure_labels(method: str, path: str, body: bytes) -> dict[str, str]:
    """A failed night's push: a POST of exactly the failure gauge; its model and labels."""
    assert method == "POST", f"a failure is added to the group (POST), not {method}"
    (family,) = text_string_to_metric_families(body.decode())
    (sample,) = family.samples
    assert sample.name == FAILURE
    assert path.startswith("/metrics/job/ml_monitoring/model/")
    return {"model": path.rsplit("/", 1)[1], **sample.labels}


def only_failure(recorded: Recorded) -> dict[str, str]:
    """The labels of the one request made, which must be a failed night's push."""
    (request,) = recorded.requests
    return failure_labels(*request)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port by a thread of this process; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""The local stack's alert receiver: Alertmanager's webhook notifications, kept where a person
can read them (`driftline alerts`), instead of retried into a port nobody listens on.

Run as `python -m driftline.stack.receiver --port N --record FILE`: each notification is one JSON
line in FILE ({"received_at": ..., "notification": <Alertmanager's webhook body>}).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PATH = "/alerts"
MAX_BODY_BYTES = 1 << 20


def read_notifications(record: Path) -> list[dict[str, Any]]:
    """Every notification received so far, oldest first; a torn last line is skipped."""
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def serve(port: int, record: Path) -> None:
    """Listen on 127.0.0.1:`port` until killed."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != PATH or not 0 < length <= MAX_BODY_BYTES:
                self.send_error(404 if self.path != PATH else 413)
                return
            try:
                notification = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "expected Alertmanager's JSON webhook body")
                return
            line = json.dumps({"received_at": time.time(), "notification": notification})
            with lock, record.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            if self.path != "/-/ready":
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ready\n")

        def log_message(self, format: str, *args: object) -> None:
            pass  # the record is the log

    record.parent.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m driftline.stack.receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.record)


if __name__ == "__main__":
    main()

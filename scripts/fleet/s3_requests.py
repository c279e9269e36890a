"""The lake's requests per run, on a local S3 (moto) that counts every request it answers."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from core.settings import load_settings
from driftline.stack import launcher as procs
from scripts.fleet.fleet import BIN, REPO, SOURCE_MODEL, START

# --- the lake's requests per run, on a local S3 (moto) ---------------------------------------

# moto accepts any credentials; never ask the EC2 metadata address (off loopback) for them
MOTO_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "driftline-scale",
    "AWS_SECRET_ACCESS_KEY": "driftline-scale-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Requests:
    """Requests an S3 server answered, by kind and by top-level prefix (lake/ or registry/)."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: Any = field(default_factory=lambda: __import__("threading").Lock())

    def record(self, environ: Mapping[str, Any]) -> None:
        method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
        path = environ.get("PATH_INFO", "").lstrip("/").split("/")
        area = path[1] if len(path) > 1 and path[1] else "bucket"
        if area == "bucket":  # a listing names its area in its prefix
            prefix = parse_qs(query).get("prefix", [""])[0]
            area = prefix.split("/", 1)[0] or "bucket"
        if method == "GET" and ("list-type" in query or "prefix=" in query or len(path) < 2):
            kind = "LIST"
        elif method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ:
            kind = "COPY"
        elif method == "POST" and "delete" in query:
            kind = "DELETE (batch)"
        else:
            kind = method
        with self.lock:
            self.counts[f"{area} {kind}"] += 1

    def take(self) -> Counter[str]:
        with self.lock:
            taken, self.counts = self.counts, Counter()
        return taken


@contextlib.contextmanager
def counting_s3() -> Iterator[tuple[str, S3Requests]]:
    """moto's S3 in this process, on a free loopback port, counting every request."""
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    requests = S3Requests()
    backend = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        requests.record(environ)
        return backend(environ, start_response)

    port = procs.free_port()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}", requests
    finally:
        server.shutdown()


def lake_requests(days: int, rows_per_day: int) -> dict[str, dict[str, int]]:
    """S3 requests, for one model whose lake and registry are on S3, of `driftline backfill` of
    `days - 1` days, then of the nightly run (`driftline monitor --no-push`) of the day after
    them, which finds the window state the backfill left, then of the same night again without
    a state (deleted first): a night that reads its whole window."""
    import botocore.session
    from botocore.config import Config

    os.environ.update(MOTO_AWS_ENV)
    from driftline import commands

    with counting_s3() as (endpoint, requests), tempfile.TemporaryDirectory() as home:
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=f"http://{endpoint}", config=Config(s3={"addressing_style": "path"})
        )
        client.create_bucket(Bucket="driftline")
        query = f"?endpoint_override={endpoint}&scheme=http"
        env = {
            **os.environ,
            "DATA_LAKE_URI": f"s3://driftline/lake{query}",
            "MODEL_REGISTRY_URI": f"s3://driftline/registry{query}",
            "DRIFTLINE_CACHE_DIR": str(Path(home) / "cache"),
            "PREFECT_HOME": str(Path(home) / "prefect"),
            "PROMETHEUS_URL": "http://127.0.0.1:9",
        }
        env.pop("PREFECT_API_URL", None)
        settings = load_settings(env)
        commands.train(settings, model=SOURCE_MODEL)
        commands.simulate(settings, model=SOURCE_MODEL, start=START, days=days,
                          rows_per_day=rows_per_day, scenario="both", seed=0)  # fmt: skip
        last = START + timedelta(days=days - 1)
        nightly = ["monitor", "--date", str(last), "--no-push"]
        runs = {
            f"backfill ({days - 1} days)": [
                "backfill", "--start", str(START), "--end", str(last - timedelta(days=1))],
            "monitor (1 day, after the night before)": nightly,
            "monitor (1 day, no window state)": nightly,
        }  # fmt: skip
        found = {}
        for name, args in runs.items():
            if "no window state" in name:
                client.delete_object(
                    Bucket="driftline",
                    Key=f"lake/monitoring/model={SOURCE_MODEL}/.window-state.arrow",
                )
            requests.take()
            done = procs.run([str(BIN / "driftline"), *args], env=env, cwd=REPO,
                             timeout_seconds=900)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"driftline {' '.join(args)}: {done.stderr[-2000:]}")
            found[name] = dict(sorted(requests.take().items()))
    return found

"""Many models on a process work pool: a Prefect server on PostgreSQL, two workers, the
deployments `python -m flows.deployments deploy` registers, and results equal to local runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import load_settings
from flows.deployments import NIGHTLY_CONCURRENCY_LIMIT, deployments, main
from scripts.fleet.fleet import (
    START,
    build_fleet,
    expected_samples,
    lake_differences,
    local_results,
    parse_samples,
    pushgateway_groups,
)
from scripts.fleet.processes import deploy, runs_taken, wait_for_runs, workers
from scripts.scale import batch_stamps
from tasks.export.catalogue import day_start_seconds
from tests import procs
from tests.postgres import postgres, prefect_server
from tests.pushgateway_recorder import serving

REPO = Path(__file__).resolve().parents[1]
MODELS = ("gem-a", "gem-b", "gem-c")
DAYS = [START + timedelta(days=i) for i in range(3)]
POOL = "driftline-test"


def test_each_nightly_deployment_runs_one_at_a_time_and_prefect_yaml_says_so_too() -> None:
    served = deployments(["a", "b"])
    assert {d.name: d.concurrency_limit for d in served} == {
        "monitor-a": NIGHTLY_CONCURRENCY_LIMIT,
        "monitor-b": NIGHTLY_CONCURRENCY_LIMIT,
        "backfill": None,
    }
    assert NIGHTLY_CONCURRENCY_LIMIT == 1
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    limits = {d["name"]: d.get("concurrency_limit") for d in spec["deployments"]}
    assert limits == {"monitor-diamonds-price": 1, "backfill": None}


def test_deploy_without_a_prefect_server_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["deploy", "--models", "a,b"]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err


# --- a Pushgateway behind a recorder: every push is kept, then passed on ------------------------


@dataclass
class Pushes:
    url: str = ""
    received: list[tuple[str, str, bytes, int]] = field(default_factory=list)  # method, path, ...


@contextlib.contextmanager
def recorded(upstream: str) -> Iterator[Pushes]:
    """An HTTP proxy in this process that records each request's body and forwards it."""
    pushes = Pushes()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = urllib.request.Request(
                upstream + self.path, data=body or None, method=self.command
            )
            if self.headers.get("Content-Type"):
                request.add_header("Content-Type", self.headers["Content-Type"])
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, answer = error.code, error.read()
            with lock:
                pushes.received.append((self.command, self.path, body, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_PUT = do_POST = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as pushes.url:
        yield pushes


def _no_overlap(runs: list[Any]) -> bool:
    spans = sorted((r.start_time, r.end_time) for r in runs)
    return all(later[0] >= earlier[1] for earlier, later in pairwise(spans))


@pytest.mark.e2e
@pytest.mark.prefect
@pytest.mark.timeout(420)
def test_two_process_workers_on_a_postgres_backed_server_run_every_model_day_as_locally(
    tmp_path: Path, diamonds_registry: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from scripts.scale import submit

    shutil.copytree(diamonds_registry, tmp_path / "registry")
    lake_env = {
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
        "DRIFTLINE_CACHE_DIR": str(tmp_path / "cache"),
    }
    settings = load_settings(lake_env)
    build_fleet(settings, MODELS, days=len(DAYS), rows_per_day=300)

    # the server retries a run that found its deployment's slot taken after 2 s (default 30 s)
    server_env = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
    with (
        postgres(log=tmp_path / "postgres.log") as cluster,
        prefect_server(cluster, tmp_path / "prefect", env=server_env) as server,
        procs.pushgateway(tmp_path) as gateway,
        recorded(gateway.url) as pushes,
    ):
        env = {
            **os.environ,
            **lake_env,
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(tmp_path / "client"),
            "PUSHGATEWAY_URL": pushes.url,
            "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        deployed = deploy(POOL, MODELS, env)
        assert f"work pool {POOL} (process): created" in deployed
        for model in MODELS:
            assert f"monitor/monitor-{model} " in deployed
        with (
            workers(POOL, 2, 2, env, tmp_path / "workers") as started,
            temporary_settings({PREFECT_API_URL: server.api_url}),
        ):
            # every model's days at once: the pool has to hold back the runs of one model
            nightly = {
                submit(f"monitor/monitor-{m}", {"batch_date": str(d)}, f"monitor-{m}-{d}"): m
                for d in DAYS
                for m in MODELS
            }
            backfill = submit(
                "backfill/backfill",
                {"model": MODELS[0], "start": str(DAYS[0]), "end": str(DAYS[-1])},
                f"backfill-{MODELS[0]}-{DAYS[0]}-{DAYS[-1]}",
            )
            runs = wait_for_runs([*nightly, backfill], timeout_seconds=300)
        taken = runs_taken([w.out for w in started])
        groups = pushgateway_groups(gateway.url)
        server_log = server.log.read_text(errors="replace")

    states = {r.name: r.state.name for r in runs}
    assert set(states.values()) == {"Completed"}, states
    # both workers took runs, and each run was started by one of them only
    assert all(taken), f"runs per worker: {taken}"
    assert sorted(n for t in taken for n in t) == sorted(states)
    # the deployment's concurrency limit: one model's nightly runs never overlapped
    by_model: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if run.id in nightly:
            by_model[nightly[run.id]].append(run)
    for model, model_runs in by_model.items():
        assert _no_overlap(model_runs), (model, [(r.start_time, r.end_time) for r in model_runs])
    assert "/api/" in server_log  # the server's access log is on (what scripts/scale.py counts)

    # every model-day's result in the lake equals the same day run locally, one by one
    for model in MODELS:
        assert lake_differences(settings, model, DAYS, tmp_path / "per-model") == []
    # every push carried what the local run computes for its model and day
    expected = {
        (model, day_start_seconds(day)): expected_samples(result)
        for model in MODELS
        for day, result in zip(DAYS, local_results(settings, model, DAYS), strict=True)
    }
    pushed: dict[tuple[str, float], Any] = {}
    last: dict[str, tuple[str, float]] = {}
    for method, path, body, status in pushes.received:
        assert (method, status) == ("PUT", 200), (method, path, status)
        model = path.rsplit("/model/", 1)[1]
        samples = parse_samples(body.decode())
        (stamp,) = batch_stamps(samples)
        assert (model, stamp) not in pushed, f"{model} {stamp} pushed twice"
        pushed[(model, stamp)] = samples
        last[model] = (model, stamp)
    assert sorted(pushed) == sorted(expected)
    for key, samples in pushed.items():
        assert samples == expected[key], key
    # and the Pushgateway holds each model's last push
    assert {m: groups[m] for m in MODELS} == {m: expected[last[m]] for m in MODELS}

"""Many models through a real Prefect server on PostgreSQL, run by process workers.

    .venv/bin/python scripts/scale.py [--models 4] [--days 5] [--workers 2] [--worker-limit 2]
        [--rows-per-day 2000] [--verify 10] [--distinct 10] [--workdir DIR] [--json FILE]
    .venv/bin/python scripts/scale.py --lake-requests [--days 30]

The default is a quick check (4 models x 5 days); docs/scaling.md records
`--models 100 --days 30`. What it does:

1. Set-up (not timed): trains the diamonds model once, registers it under `--models` names
   (gem-0000, gem-0001, ...: the same files, a version of their own), and simulates `--days`
   daily batches for the first `--distinct` models with their own seeds; the others get copies
   of those files in partitions of their own (simulating is the slow part of the set-up).
2. Starts a private PostgreSQL (driftline/stack/postgres.py: durable settings,
   pg_stat_statements), a Prefect server on it with its HTTP access log on, a Pushgateway, and a
   Prometheus scraping the Pushgateway (infra/prometheus/prometheus.yml rendered for loopback,
   as `driftline stack up` does; admin API on, 400d retention, so backfilled history can go in).
3. `python -m flows.deployments deploy` creates the process work pool and deploys every model's
   nightly deployment and the backfill; `--workers` x `prefect worker start --pool P --type
   process --limit L` run them.
4. Backfill: one backfill flow run per model over days 1..N-1 (the flow maps one task per day),
   its history written into Prometheus' data dir by promtool; Prometheus restarted to load it.
5. Nightly: one run of each model's nightly deployment for day N, pushed to the Pushgateway.
6. Verifies: every model-day has its result.json and every model its Pushgateway group for day
   N; for `--verify` models (spread over the fleet), every day's result.json equals, byte for
   byte, the same day computed locally by the plain functions (tasks.day.engine.run_day), and
   the model's pushed gauges equal the local run's (all but the two wall-clock ones).

It prints model-days per minute, Prefect API calls (HTTP requests in the server's uvicorn access
log, and the SQL statements pg_stat_statements counted), the Prefect database's size and rows,
the Pushgateway's groups and RSS, and Prometheus' series and RSS after the backfill and after the
push. Every process it starts is stopped by its pid.

`--lake-requests` instead counts the S3 requests of one `driftline monitor --no-push` and one
`driftline backfill` of the days before it, for one model whose lake and registry are on a
local S3 (moto, in this process, counting every request it answers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from core.settings import Settings, load_settings, prefect_environment
from data_lake.lake import Lake
from driftline.stack import launcher as procs
from driftline.stack.postgres import Cluster, PrefectServer, postgres, prefect_server, rss_bytes
from model_registry.registry import MODEL_FILE, REFERENCE_FILE, ModelCard, Registry
from tasks.day.engine import load_model_context, run_day
from tasks.export.catalogue import JOB, RunStamp, day_start_seconds, metric_families, registry_for
from tasks.export.history import scheduled_run_seconds
from tasks.results.day import MonitoringResult, to_json

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START = date(2026, 1, 1)
SOURCE_MODEL = "diamonds-price"
# wall-clock gauges: a run and its local replay differ in them by nature
VOLATILE = frozenset(
    {
        "ml_monitoring_last_success_timestamp_seconds",
        "ml_monitoring_run_duration_seconds",
        "push_time_seconds",
        "push_failure_time_seconds",
    }
)
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# --- the fleet: one trained model under many names, each with batches of its own -------------


def model_names(count: int) -> list[str]:
    return [f"gem-{i:04d}" for i in range(count)]


def clone_model(registry: Registry, source: str, name: str) -> ModelCard:
    """Register `source`'s production version again as `name` (same files, a card of its own)."""
    card = registry.card(source)
    files = {filename: registry.read_verified(card, filename) for filename in card.sha256}
    return registry.register(
        model=name,
        estimator_bytes=files.pop(MODEL_FILE),
        reference_bytes=files.pop(REFERENCE_FILE),
        target=card.target,
        features=card.features,
        metrics=card.metrics,
        libraries=card.libraries,
        extra_files=files,
        extra=card.extra,
    )


def _simulate(lake: str, registry: str, model: str, days: int, rows: int, seed: int) -> str:
    from driftline import commands

    settings = load_settings({"DATA_LAKE_URI": lake, "MODEL_REGISTRY_URI": registry})
    commands.simulate(settings, model=model, start=START, days=days, rows_per_day=rows,
                      scenario="both", seed=seed)  # fmt: skip
    return model


def build_fleet(
    settings: Settings,
    models: Sequence[str],
    *,
    days: int,
    rows_per_day: int,
    jobs: int = 1,
    distinct: int = 10,
) -> None:
    """Register `SOURCE_MODEL` (already in the registry) as every one of `models`, and give each
    `days` batches from START (data and concept drift from the middle): the first `distinct`
    models simulated with their own seed, the others a copy of the files of one of those (model
    i gets model i % distinct's), in partitions of their own. A local lake only."""
    registry = Registry.open(settings.model_registry_uri)
    for name in models:
        clone_model(registry, SOURCE_MODEL, name)
    simulated = list(models[:distinct])
    args = [
        (settings.data_lake_uri, settings.model_registry_uri, m, days, rows_per_day, i)
        for i, m in enumerate(simulated)
    ]
    if jobs <= 1:
        for a in args:
            _simulate(*a)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_simulate, *zip(*args, strict=True)))
    lake = Path(settings.data_lake_uri)
    for i, name in enumerate(models[distinct:], start=distinct):
        source = simulated[i % len(simulated)]
        for dataset in ("scored", "labels"):
            shutil.copytree(lake / dataset / f"model={source}", lake / dataset / f"model={name}")


# --- the same days one by one, locally, with the plain functions ------------------------------


def local_results(settings: Settings, model: str, days: Sequence[date]) -> list[MonitoringResult]:
    """Each day computed as a nightly run computes it, one day at a time, without Prefect."""
    lake = Lake.open(settings.data_lake_uri)
    registry = Registry.open(settings.model_registry_uri, cache_dir=settings.cache_dir)
    context = load_model_context(registry, model)
    return [run_day(lake, context, day, settings).result for day in days]


def lake_differences(settings: Settings, model: str, days: Sequence[date]) -> list[str]:
    """The days whose result.json in the lake is missing or differs from the local run's."""
    lake = Lake.open(settings.data_lake_uri)
    differences = []
    for day, result in zip(days, local_results(settings, model, days), strict=True):
        stored = lake.read_bytes(lake.result_path(model, day))
        if stored is None:
            differences.append(f"{model} {day}: no result.json")
        elif stored != to_json(result):
            differences.append(f"{model} {day}: result.json differs from the local run")
    return differences


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str, *, drop_labels: Sequence[str] = ()) -> Samples:
    """Exposition text as {(name, sorted labels): value}, wall-clock gauges left out."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in VOLATILE:
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop_labels))
            samples[(s.name, labels)] = s.value
    return samples


def expected_samples(result: MonitoringResult) -> Samples:
    """What a push of `result` carries (its grouping labels job and model in the URL)."""
    from prometheus_client.exposition import generate_latest

    text = generate_latest(registry_for(metric_families(result, RunStamp(0.0, 0.0))))
    return parse_samples(text.decode())


def pushgateway_groups(pushgateway_url: str) -> dict[str, Samples]:
    """Every model's group on the Pushgateway, without the job, model and instance labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{pushgateway_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    groups: dict[str, Samples] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("job") != JOB or s.name in VOLATILE:
                continue
            model = s.labels["model"]
            labels = tuple(
                sorted((k, v) for k, v in s.labels.items() if k not in {"job", "model", "instance"})
            )
            groups.setdefault(model, {})[(s.name, labels)] = s.value
    return groups


# --- processes --------------------------------------------------------------------------------


def prefect_cli(*args: str, env: Mapping[str, str], timeout: float = 300) -> str:
    done = procs.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, timeout_seconds=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def deploy(pool: str, models: Sequence[str], env: Mapping[str, str]) -> str:
    """The one command a user runs: `python -m flows.deployments deploy --pool P --models ...`."""
    argv = [sys.executable, "-m", "flows.deployments", "deploy", "--pool", pool,
            "--models", ",".join(models)]  # fmt: skip
    done = procs.run(argv, env=env, cwd=REPO, timeout_seconds=600)
    if done.returncode != 0:
        raise RuntimeError(f"deploy exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def worker_argv(pool: str, name: str, limit: int) -> list[str]:
    return [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
            "--name", name, "--limit", str(limit)]  # fmt: skip


@contextlib.contextmanager
def workers(
    pool: str, count: int, limit: int, env: Mapping[str, str], logs: Path
) -> Iterator[list[procs.Process]]:
    """`count` process workers of `pool`, each in its own process group, run from the checkout
    (the deployments' pull step works there); stopped by pid at the end."""
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        started = []
        for i in range(count):
            home = logs / f"worker-{i}-home"
            home.mkdir(exist_ok=True)
            started.append(
                stack.enter_context(
                    procs.launched(
                        worker_argv(pool, f"worker-{i}", limit),
                        out=logs / f"worker-{i}.log",
                        env={**env, "PREFECT_HOME": str(home)},
                        cwd=REPO,
                    )
                )
            )
        yield started


def runs_taken(worker_logs: Sequence[Path]) -> list[set[str]]:
    """The names of the flow runs each worker started. Every worker of a pool may try to take a
    run; the server lets one through and aborts the others' submissions, so the line that counts
    is "submitted to infrastructure"."""
    pattern = re.compile(r"Flow run '([^']+)' submitted to infrastructure")
    return [set(pattern.findall(p.read_text(errors="replace"))) for p in worker_logs]


# requests this script makes itself while it waits (left out of the figures it prints)
OBSERVER_REQUESTS = Counter[str]()


def wait_for_runs(ids: Sequence[UUID], *, timeout_seconds: float, poll: float = 2.0) -> list[Any]:
    """Poll the server until every flow run is in a final state; return the runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_seconds
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))),
                limit=len(ids),
            )
            OBSERVER_REQUESTS["POST /api/flow_runs/filter"] += 1
            done = [r for r in runs if r.state is not None and r.state.type.value in TERMINAL]
            if len(done) == len(ids):
                return runs
            if time.monotonic() > deadline:
                states = Counter(r.state.name if r.state else "?" for r in runs)
                raise TimeoutError(f"{len(done)} of {len(ids)} runs final after "
                                   f"{timeout_seconds:.0f} s: {dict(states)}")  # fmt: skip
            time.sleep(poll)


# --- measurements -----------------------------------------------------------------------------

ACCESS = re.compile(r'uvicorn\.access - \S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d+)')
UUID_IN_PATH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class ApiLog:
    """HTTP requests the Prefect server logged, read in phases."""

    path: Path
    offset: int = 0

    def read_phase(self) -> Counter[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read()
            self.offset += len(text)
        calls: Counter[str] = Counter()
        for method, url, _ in ACCESS.findall(text.decode(errors="replace")):
            calls[f"{method} {UUID_IN_PATH.sub('{id}', url.split('?')[0])}"] += 1
        return calls


def prometheus_value(url: str, expr: str, *, at: float | None = None) -> float:
    from urllib.parse import urlencode

    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    with urllib.request.urlopen(f"{url}/api/v1/query?{urlencode(params)}") as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


DB_TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact",
             "events", "event_resources", "deployment")  # fmt: skip


def database_figures(cluster: Cluster) -> dict[str, Any]:
    rows = {t: int(cluster.psql(f"SELECT count(*) FROM {t}")) for t in DB_TABLES}
    table_bytes = {t: int(cluster.psql(f"SELECT pg_total_relation_size('{t}')")) for t in DB_TABLES}
    return {
        "size_bytes": int(cluster.psql("SELECT pg_database_size(current_database())")),
        "rows": rows,
        "table_bytes": table_bytes,
        "sql_statements": int(
            cluster.psql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements")
        ),
    }


@dataclass
class Phase:
    name: str
    seconds: float
    flow_runs: int
    model_days: int
    api_calls: Counter[str] = field(default_factory=Counter)
    sql_statements: int = 0
    database_bytes: int = 0  # how much the Prefect database grew during the phase

    def line(self) -> str:
        per_minute = self.model_days / (self.seconds / 60) if self.seconds else 0.0
        return (
            f"{self.name:<9} {self.flow_runs:>5} flow runs {self.model_days:>6} model-days "
            f"{self.seconds:>8.1f} s  {per_minute:>8.1f} model-days/min  "
            f"{sum(self.api_calls.values()):>7} API requests "
            f"({sum(self.api_calls.values()) / max(self.flow_runs, 1):.0f}/run)  "
            f"{self.sql_statements:>8} SQL statements"
        )


def prometheus_config(directory: Path, pushgateway: str, prometheus_port: int) -> Path:
    """infra/prometheus/prometheus.yml for loopback (the local stack's rendering), scraping the
    Pushgateway every 5 s; no rules or Alertmanager (not what is measured)."""
    from driftline import stack

    config = stack.StackConfig(
        state_dir=directory,
        prometheus_port=prometheus_port,
        pushgateway_port=int(pushgateway.rsplit(":", 1)[1]),
        scrape_interval="5s",
        evaluation_interval="5s",
    )
    base = yaml.safe_load((REPO / "infra" / "prometheus" / "prometheus.yml").read_text())
    rendered = stack.render_prometheus_config(base, config)
    rendered.pop("alerting", None)
    rendered.pop("rule_files", None)
    rendered["scrape_configs"] = [
        j for j in rendered["scrape_configs"] if j["job_name"] != "alertmanager"
    ]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    return path


@contextlib.contextmanager
def prometheus(directory: Path, pushgateway: str) -> Iterator[procs.Server]:
    port = procs.free_port()
    config = prometheus_config(directory, pushgateway, port)
    argv = [procs.binary(procs.PROMETHEUS), f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=400d",
            "--web.enable-admin-api", f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with procs.serving(argv, port, out=directory / "prometheus.log") as server:
        yield server


def prometheus_figures(server: procs.Server, history: Sequence[date]) -> dict[str, float]:
    """Prometheus' own gauges (scraped from itself), and how many series the backfilled
    history holds: those with a sample stamped within the history's days."""
    url = server.url
    at = scheduled_run_seconds(history[-1]) + 3600
    window = f"{len(history) + 1}d"
    return {
        "head_series": prometheus_value(url, "prometheus_tsdb_head_series"),
        "history_series": prometheus_value(
            url, f'count(last_over_time({{job="{JOB}"}}[{window}]))', at=at
        ),
        "blocks": prometheus_value(url, "prometheus_tsdb_blocks_loaded"),
        "block_bytes": prometheus_value(url, "prometheus_tsdb_storage_blocks_bytes"),
        "rss_bytes": float(rss_bytes(server.process.pid)),
    }


# --- the run ----------------------------------------------------------------------------------


def submit(deployment: str, parameters: dict[str, Any], name: str) -> UUID:
    from prefect.deployments import run_deployment

    run = run_deployment(
        deployment, parameters=parameters, flow_run_name=name, timeout=0, as_subflow=False
    )
    return run.id  # type: ignore[union-attr]


def run_phase(
    name: str,
    submissions: Sequence[tuple[str, dict[str, Any], str]],
    model_days: int,
    *,
    api: ApiLog,
    cluster: Cluster,
    timeout_seconds: float,
) -> tuple[Phase, list[Any]]:
    before = database_figures(cluster)
    api.read_phase()
    started = time.perf_counter()
    ids = [submit(*s) for s in submissions]
    OBSERVER_REQUESTS.clear()
    runs = wait_for_runs(ids, timeout_seconds=timeout_seconds, poll=5.0)
    seconds = time.perf_counter() - started
    time.sleep(1)  # the last requests reach the log
    phase = Phase(name, seconds, len(ids), model_days, api.read_phase() - OBSERVER_REQUESTS)
    after = database_figures(cluster)
    phase.sql_statements = after["sql_statements"] - before["sql_statements"]
    phase.database_bytes = after["size_bytes"] - before["size_bytes"]
    return phase, runs


def check_runs(runs: Sequence[Any]) -> None:
    failed = [(r.name, r.state.name) for r in runs if r.state.type.value != "COMPLETED"]
    if failed:
        raise SystemExit(f"{len(failed)} flow runs did not complete: {failed[:10]}")


def batch_stamps(samples: Samples) -> set[float]:
    """The batch days (00:00 UTC, Unix seconds) a group's gauges describe."""
    return {v for (name, _), v in samples.items() if name == "ml_batch_timestamp_seconds"}


def verify(
    settings: Settings,
    models: Sequence[str],
    sample: Sequence[str],
    days: Sequence[date],
    pushgateway: str,
) -> dict[str, Any]:
    lake = Lake.open(settings.data_lake_uri)
    missing = [f"{m} {d}" for m in models for d in days if not lake.exists(lake.result_path(m, d))]
    groups = pushgateway_groups(pushgateway)
    last = days[-1]
    stamp = day_start_seconds(last)
    wrong_group = [m for m in models if batch_stamps(groups.get(m, {})) != {stamp}]
    lake_diffs: list[str] = []
    push_diffs: list[str] = []
    for model in sample:
        lake_diffs += lake_differences(settings, model, days)
        (result,) = local_results(settings, model, [last])
        if groups.get(model) != expected_samples(result):
            push_diffs.append(model)
    return {
        "results_missing": missing,
        "groups": len(groups),
        "groups_not_on_last_day": wrong_group,
        "verified_models": list(sample),
        "lake_differences": lake_diffs,
        "push_differences": push_diffs,
    }


def spread(models: Sequence[str], count: int) -> list[str]:
    """`count` models spread evenly over the fleet (first and last included)."""
    if count >= len(models):
        return list(models)
    if count <= 1:
        return [models[0]]
    step = (len(models) - 1) / (count - 1)
    return [models[round(i * step)] for i in range(count)]


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
    """S3 requests of `driftline monitor --no-push` for one day and of `driftline backfill` of
    the `days - 1` days before it, for one model whose lake and registry are on S3."""
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
        runs = {
            "monitor (1 day)": ["monitor", "--date", str(last), "--no-push"],
            f"backfill ({days - 1} days)": [
                "backfill", "--start", str(START), "--end", str(last - timedelta(days=1))],
        }  # fmt: skip
        found = {}
        for name, args in runs.items():
            requests.take()
            done = procs.run([str(BIN / "driftline"), *args], env=env, cwd=REPO,
                             timeout_seconds=900)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"driftline {' '.join(args)}: {done.stderr[-2000:]}")
            found[name] = dict(sorted(requests.take().items()))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-limit", type=int, default=2, help="flow runs per worker")
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--verify", type=int, default=10, help="models compared day by day")
    parser.add_argument("--workdir", type=Path, help="default: a temp dir, removed at the end")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--jobs", type=int, default=2, help="processes simulating the batches")
    parser.add_argument(
        "--distinct", type=int, default=10, help="models simulated; the others copy their files"
    )
    parser.add_argument(
        "--lake-requests",
        action="store_true",
        help="only count the S3 requests of one nightly run and one backfill (local moto S3)",
    )
    opts = parser.parse_args(argv)
    if opts.days < 2 or opts.models < 1:
        parser.error("--days must be at least 2 and --models at least 1")
    if opts.lake_requests:
        for run, counts in lake_requests(opts.days, opts.rows_per_day).items():
            print(f"{run}: {sum(counts.values())} S3 requests: {counts}")
        return 0
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="driftline-scale-"))
    try:
        return _run(opts, work.resolve())
    finally:
        if opts.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(opts: argparse.Namespace, work: Path) -> int:
    from driftline import commands

    work.mkdir(parents=True, exist_ok=True)
    models = model_names(opts.models)
    days = [START + timedelta(days=i) for i in range(opts.days)]
    env = {
        **os.environ,
        "DATA_LAKE_URI": str(work / "lake"),
        "MODEL_REGISTRY_URI": str(work / "registry"),
        "DRIFTLINE_CACHE_DIR": str(work / "cache"),
        "DRIFTLINE_PUSH_RETRY_DELAYS": "2,10,30",
    }
    prefect_environment(env)  # local, quiet, its home inside the project
    settings = load_settings(env)
    marker = work / f"fleet-{opts.models}-{opts.days}-{opts.rows_per_day}-{opts.distinct}"
    if not marker.exists():
        started = time.perf_counter()
        print(f"set-up: {opts.models} models x {opts.days} days x {opts.rows_per_day} rows "
              f"in {work} ...", flush=True)  # fmt: skip
        shutil.rmtree(work / "lake", ignore_errors=True)
        shutil.rmtree(work / "registry", ignore_errors=True)
        commands.train(settings, model=SOURCE_MODEL)
        build_fleet(settings, models, days=opts.days, rows_per_day=opts.rows_per_day,
                    jobs=opts.jobs, distinct=opts.distinct)  # fmt: skip
        marker.touch()
        print(f"set-up took {time.perf_counter() - started:.0f} s", flush=True)
    else:  # a rerun in the same workdir starts from the simulated inputs alone
        shutil.rmtree(work / "lake" / "monitoring", ignore_errors=True)
    for stale in ("prometheus", "pushgateway", "prefect", "workers"):
        shutil.rmtree(work / stale, ignore_errors=True)
        (work / stale).mkdir()

    pool = "scale"
    figures: dict[str, Any] = {"models": opts.models, "days": opts.days,
                               "rows_per_day": opts.rows_per_day, "workers": opts.workers,
                               "worker_limit": opts.worker_limit}  # fmt: skip
    total_started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            postgres(settings={}, preload=["pg_stat_statements"], log=work / "postgres.log")
        )
        cluster.psql("CREATE EXTENSION pg_stat_statements")
        server: PrefectServer = stack.enter_context(prefect_server(cluster, work / "prefect"))
        gateway = stack.enter_context(procs.pushgateway(work / "pushgateway"))
        prom = stack.enter_context(prometheus(work / "prometheus", gateway.url))
        env |= {"PREFECT_API_URL": server.api_url, "PUSHGATEWAY_URL": gateway.url,
                "PROMETHEUS_URL": prom.url, "PREFECT_HOME": str(work / "prefect" / "client"),
                # a worker asks for new runs every 2 s (Prefect's default: 10 s)
                "PREFECT_WORKER_QUERY_SECONDS": "2"}  # fmt: skip
        os.environ.update(env)  # this process submits runs to the same server
        api = ApiLog(server.log)
        api.read_phase()  # start-up

        started = time.perf_counter()
        print(deploy(pool, models, env), end="", flush=True)
        deploy_phase = Phase("deploy", time.perf_counter() - started, 0, 0, api.read_phase())
        print(f"deploy: {deploy_phase.seconds:.1f} s, "
              f"{sum(deploy_phase.api_calls.values())} API requests", flush=True)  # fmt: skip

        started_workers = stack.enter_context(
            workers(pool, opts.workers, opts.worker_limit, env, work / "workers")
        )
        time.sleep(3)
        backfill_days = days[:-1]
        backfills = [
            ("backfill/backfill",
             {"model": m, "start": str(backfill_days[0]), "end": str(backfill_days[-1]),
              "prometheus_data": str(work / "prometheus" / "data")},
             f"backfill-{m}-{backfill_days[0]}-{backfill_days[-1]}")
            for m in models
        ]  # fmt: skip
        backfill_phase, backfill_runs = run_phase(
            "backfill", backfills, len(models) * len(backfill_days),
            api=api, cluster=cluster, timeout_seconds=max(600, 30 * len(models)),
        )  # fmt: skip
        print(backfill_phase.line(), flush=True)
        check_runs(backfill_runs)
        prom.restart()  # loads the blocks the backfill wrote
        time.sleep(12)  # two scrapes of itself
        after_backfill = prometheus_figures(prom, backfill_days)

        nightly = [
            (f"monitor/monitor-{m}", {"batch_date": str(days[-1])}, f"monitor-{m}-{days[-1]}")
            for m in models
        ]
        nightly_phase, nightly_runs = run_phase(
            "nightly", nightly, len(models),
            api=api, cluster=cluster, timeout_seconds=max(600, 20 * len(models)),
        )  # fmt: skip
        print(nightly_phase.line(), flush=True)
        check_runs(nightly_runs)
        time.sleep(12)  # two scrapes of the Pushgateway
        after_push = prometheus_figures(prom, backfill_days)
        gateway_rss = rss_bytes(gateway.process.pid)
        server_rss = rss_bytes(server.process.pid)
        database = database_figures(cluster)
        taken = runs_taken([p.out for p in started_workers])
        total_seconds = time.perf_counter() - total_started

        sample = spread(models, opts.verify)
        print(f"verifying: every model-day's result and push exist; {len(sample)} models "
              f"compared day by day with local runs ...", flush=True)  # fmt: skip
        started = time.perf_counter()
        checked = verify(settings, models, sample, days, gateway.url)
        checked["seconds"] = round(time.perf_counter() - started, 1)

    api_total = deploy_phase.api_calls + backfill_phase.api_calls + nightly_phase.api_calls
    figures |= {
        "phases": {
            p.name: {
                "seconds": round(p.seconds, 1),
                "flow_runs": p.flow_runs,
                "model_days": p.model_days,
                "model_days_per_minute": round(p.model_days / (p.seconds / 60), 1)
                if p.seconds and p.model_days
                else None,
                "api_requests": sum(p.api_calls.values()),
                "sql_statements": p.sql_statements,
                "database_bytes": p.database_bytes,
                "top_requests": p.api_calls.most_common(8),
            }
            for p in (deploy_phase, backfill_phase, nightly_phase)
        },
        "api_requests_total": sum(api_total.values()),
        "database": database,
        "pushgateway": {"groups": checked["groups"], "rss_bytes": gateway_rss},
        "prefect_server_rss_bytes": server_rss,
        "prometheus_after_backfill": after_backfill,
        "prometheus_after_push": after_push,
        "runs_per_worker": [len(t) for t in taken],
        "seconds_total": round(total_seconds, 1),
        "verification": checked,
    }
    print(report(figures))
    if opts.json:
        opts.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    bad = (checked["results_missing"] or checked["groups_not_on_last_day"]
           or checked["lake_differences"] or checked["push_differences"])  # fmt: skip
    return 1 if bad else 0


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB"


def report(f: dict[str, Any]) -> str:
    p = f["phases"]
    v = f["verification"]
    db = f["database"]
    lines = [
        "",
        f"== {f['models']} models x {f['days']} days x {f['rows_per_day']} rows, "
        f"{f['workers']} workers x limit {f['worker_limit']} ==",
    ]
    for name in ("deploy", "backfill", "nightly"):
        q = p[name]
        rate = q["model_days_per_minute"]
        lines.append(
            f"{name:<9} {q['seconds']:>8.1f} s  {q['flow_runs']:>4} flow runs  "
            f"{q['model_days']:>5} model-days  "
            f"{(f'{rate:.1f} model-days/min') if rate else '':<22}"
            f"{q['api_requests']:>7} API requests  {q['sql_statements']:>8} SQL statements  "
            f"database +{_mb(q['database_bytes'])}"
        )
    lines += [
        f"total (servers up to verification): {f['seconds_total']:.0f} s; runs per worker: "
        f"{f['runs_per_worker']}",
        f"Prefect API requests (uvicorn access log): {f['api_requests_total']}; "
        f"SQL statements (pg_stat_statements, all phases and start-up): {db['sql_statements']}",
        f"Prefect database: {_mb(db['size_bytes'])}; rows {db['rows']}",
        "  by table: " + ", ".join(f"{t} {_mb(n)}" for t, n in db["table_bytes"].items()),
        f"Prefect server RSS {_mb(f['prefect_server_rss_bytes'])}",
        f"Pushgateway: {f['pushgateway']['groups']} groups, "
        f"RSS {_mb(f['pushgateway']['rss_bytes'])}",
    ]
    for when in ("after_backfill", "after_push"):
        q = f[f"prometheus_{when}"]
        lines.append(
            f"Prometheus {when.replace('_', ' ')}: head series {q['head_series']:.0f}, "
            f"history series (a sample in days 1..{f['days'] - 1}) {q['history_series']:.0f}, "
            f"{q['blocks']:.0f} blocks ({_mb(q['block_bytes'])}), RSS {_mb(q['rss_bytes'])}"
        )
    lines += [
        f"verified ({v['seconds']} s): {len(v['verified_models'])} models day by day "
        f"({', '.join(v['verified_models'][:5])}{', ...' if len(v['verified_models']) > 5 else ''}"
        f"): {len(v['lake_differences'])} lake differences, {len(v['push_differences'])} push "
        f"differences; all models: {len(v['results_missing'])} results missing, "
        f"{len(v['groups_not_on_last_day'])} Pushgateway groups not on the last day",
    ]
    for name in ("backfill", "nightly"):
        top = ", ".join(f"{k} {n}" for k, n in p[name]["top_requests"])
        lines.append(f"top requests, {name}: {top}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""The Prefect workers, deployments and Prometheus that scripts/scale.py starts, and what it reads
off them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import yaml

from driftline.stack import launcher as procs
from driftline.stack.postgres import Cluster, PrefectServer, postgres, prefect_server, rss_bytes
from scripts.fleet.fleet import BIN, REPO, TERMINAL
from tasks.export.catalogue import JOB
from tasks.export.history import scheduled_run_seconds

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


class Servers(NamedTuple):
    cluster: Cluster
    server: PrefectServer
    gateway: procs.Server
    prom: procs.Server


@contextlib.contextmanager
def servers(work: Path, env: dict[str, str]) -> Iterator[Servers]:
    """A private PostgreSQL (with pg_stat_statements), a Prefect server on it, a Pushgateway and
    a Prometheus scraping it, under `work`; `env` (and this process's environment, which submits
    the runs) is pointed at them. Each is stopped by its pid on the way out."""
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
        os.environ.update(env)
        yield Servers(cluster, server, gateway, prom)

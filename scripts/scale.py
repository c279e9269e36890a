"""Many models through a real Prefect server on PostgreSQL, run by process workers.

    .venv/bin/python scripts/scale.py [--models 4] [--days 5] [--workers 2] [--worker-limit 2]
        [--rows-per-day 2000] [--verify 10] [--distinct 10] [--workdir DIR] [--json FILE]
    .venv/bin/python scripts/scale.py --lake-requests [--days 30]
    .venv/bin/python scripts/scale.py --fleet [--models 100] [--days 30] [--workers 2] [--slices 2]
        [--compare 10]

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
   byte, the one a per-model local run writes (`driftline.monitor_day`, the days in order, into
   a scratch lake), and the model's pushed gauges equal the local run's (all but the two
   wall-clock ones).

It prints model-days per minute, Prefect API calls (HTTP requests in the server's uvicorn access
log, and the SQL statements pg_stat_statements counted), the Prefect database's size and rows,
the Pushgateway's groups and RSS, and Prometheus' series and RSS after the backfill and after the
push. Every process it starts is stopped by its pid.

`--fleet` instead runs one night (the last of `--days`) of every model through the fleet
deployments (`deploy --slices`, one flow run per slice, one task per model) and measures the
CPU seconds of the whole process tree per model-night (scripts/fleet/night.py); it verifies
every model, not a sample.

`--lake-requests` instead counts the S3 requests of one `driftline backfill` of all days but the
last, then of `driftline monitor --no-push` for the last day (the night after, with the window
state the backfill left), then of the same night again without that state, for one model whose
lake and registry are on a local S3 (moto, in this process, counting every request it answers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from core.settings import Settings, load_settings, prefect_environment
from data_lake.lake import Lake
from driftline.stack.postgres import Cluster, rss_bytes
from scripts.fleet import night
from scripts.fleet.fleet import (
    SOURCE_MODEL,
    START,
    Samples,
    build_fleet,
    expected_samples,
    lake_differences,
    local_results,
    model_names,
    pushgateway_groups,
)
from scripts.fleet.processes import (
    OBSERVER_REQUESTS,
    ApiLog,
    Phase,
    database_figures,
    deploy,
    prometheus_figures,
    runs_taken,
    servers,
    wait_for_runs,
    workers,
)
from scripts.fleet.report import report
from scripts.fleet.s3_requests import lake_requests
from tasks.export.catalogue import day_start_seconds

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
    scratch: Path,
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
        lake_diffs += lake_differences(settings, model, days, scratch)
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
        "--fleet", action="store_true", help="one night of every model through fleet deployments"
    )
    parser.add_argument("--slices", type=int, help="fleet deployments (default: --workers)")
    parser.add_argument(
        "--compare", type=int, default=0, help="with --fleet: also run N models' per-model flows"
    )
    parser.add_argument(
        "--lake-requests",
        action="store_true",
        help="only count the S3 requests of a backfill and a nightly run (local moto S3)",
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
    for stale in ("prometheus", "pushgateway", "prefect", "workers", "per-model-lake"):
        shutil.rmtree(work / stale, ignore_errors=True)
        (work / stale).mkdir()
    if opts.fleet:
        measured = night.run(opts, work, env, settings, models, days[-1])
        print(night.report(measured))
        if opts.json:
            opts.json.write_text(json.dumps(measured, indent=2, default=str) + "\n")
        found = measured["verification"]
        return 1 if found["lake_differences"] or found["push_differences"] else 0

    pool = "scale"
    figures: dict[str, Any] = {"models": opts.models, "days": opts.days,
                               "rows_per_day": opts.rows_per_day, "workers": opts.workers,
                               "worker_limit": opts.worker_limit}  # fmt: skip
    total_started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # this process submits runs to the same server
        cluster, server, gateway, prom = stack.enter_context(servers(work, env))
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
        checked = verify(settings, models, sample, days, gateway.url, work / "per-model-lake")
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


if __name__ == "__main__":
    sys.exit(main())

"""`scripts/scale.py --fleet`: one night of every model through the fleet deployments.

The same servers as the per-model measurement (a private PostgreSQL with pg_stat_statements, a
Prefect server on it, a Pushgateway, a Prometheus scraping it), `python -m flows.deployments
deploy --slices S`, `--workers` process workers; then one run of every fleet deployment for the
last day. It measures the CPU seconds of the whole process tree (servers, workers, flow runs),
with and without the servers' start-up, the wall time, the Prefect API requests and the SQL
statements of the night, and verifies every model: its result.json equals, byte for byte, the
one a per-model local run writes (`driftline.monitor_day`, the nightly run without Prefect, into
a scratch lake), and its Pushgateway group equals that day's gauges (all but the wall-clock ones).
With `--compare N` it then runs the same night of N models as flow runs of their own (the
per-model deployments), measured the same way: the cost the fleet replaces.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from core.settings import Settings
from data_lake.lake import Lake
from driftline.stack import launcher as procs
from driftline.stack.postgres import rss_bytes
from scripts.fleet.cpu import TreeCpu, tree_cpu
from scripts.fleet.fleet import (
    BIN,
    REPO,
    expected_samples,
    local_results,
    per_model_run,
    pushgateway_groups,
)
from scripts.fleet.processes import (
    OBSERVER_REQUESTS,
    ApiLog,
    database_figures,
    deploy,
    runs_taken,
    servers,
    wait_for_runs,
    workers,
)


def deploy_slices(pool: str, models: Sequence[str], slices: int, env: dict[str, str]) -> str:
    """The command a platform team runs: `python -m flows.deployments deploy --slices S`."""
    argv = [str(BIN / "python"), "-m", "flows.deployments", "deploy", "--pool", pool,
            "--models", ",".join(models), "--slices", str(slices)]  # fmt: skip
    done = procs.run(argv, env=env, cwd=REPO, timeout_seconds=600)
    if done.returncode != 0:
        raise RuntimeError(f"deploy exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def fleet_deployments(deploy_output: str) -> list[str]:
    """The fleet deployments `deploy` printed (`fleet/fleet-1-of-2 <id> ...`)."""
    return [line.split()[0] for line in deploy_output.splitlines() if line.startswith("fleet/")]


def submit(deployment: str, day: date) -> Any:
    """One run of `deployment` for `day`; the run is named as its schedule would name it."""
    from prefect.deployments import run_deployment

    name = f"{deployment.split('/')[1]}-{day}"  # fleet-1-of-2-<day>, monitor-<model>-<day>
    run = run_deployment(deployment, parameters={"batch_date": str(day)}, flow_run_name=name,
                         timeout=0, as_subflow=False)  # fmt: skip
    return run.id  # type: ignore[union-attr]


def verify(
    settings: Settings, models: Sequence[str], day: date, gateway: str, scratch: Path
) -> dict[str, Any]:
    """Every model's result.json and push against a per-model local run of the same day."""
    lake = Lake.open(settings.data_lake_uri)
    groups = pushgateway_groups(gateway)
    lake_diffs, push_diffs = [], []
    for model in models:
        if lake.read_bytes(lake.result_path(model, day)) != per_model_run(
            settings, model, day, scratch
        ):
            lake_diffs.append(model)
        (result,) = local_results(settings, model, [day])
        if groups.get(model) != expected_samples(result):
            push_diffs.append(model)
    return {"models": len(models), "groups": len(groups), "lake_differences": lake_diffs,
            "push_differences": push_diffs}  # fmt: skip


def run(
    opts: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    settings: Settings,
    models: Sequence[str],
    day: date,
) -> dict[str, Any]:
    pool = "scale"
    slices = opts.slices or opts.workers
    at_start = tree_cpu()
    wall_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        cluster, server, gateway, _ = stack.enter_context(servers(work, env))
        api = ApiLog(server.log)
        printed = deploy_slices(pool, models, slices, env)
        print(printed, end="", flush=True)
        deployments = fleet_deployments(printed)
        started_workers = stack.enter_context(
            workers(pool, opts.workers, opts.worker_limit, env, work / "workers")
        )
        time.sleep(5)  # the workers are up and polling
        api.read_phase()
        database_before = database_figures(cluster)
        before = tree_cpu()
        started = time.perf_counter()
        ids = [submit(d, day) for d in deployments]
        OBSERVER_REQUESTS.clear()
        runs = wait_for_runs(ids, timeout_seconds=max(600, 20 * len(models)), poll=2.0)
        seconds = time.perf_counter() - started
        after = tree_cpu()
        time.sleep(1)  # the last requests reach the log
        requests = api.read_phase() - OBSERVER_REQUESTS
        database = database_figures(cluster)
        sql = database["sql_statements"] - database_before["sql_statements"]
        grown = {t: n - database_before["rows"][t] for t, n in database["rows"].items()}
        database_bytes = database["size_bytes"] - database_before["size_bytes"]
        with_start_up = tree_cpu() - at_start
        wall_with_start_up = time.perf_counter() - wall_start
        taken = runs_taken([p.out for p in started_workers])
        server_rss = rss_bytes(server.process.pid)
        states = {r.name: (r.state.name, r.state.message) for r in runs}
        per_model = None
        if opts.compare:  # the same night of a few models as flow runs of their own, as before
            sample = list(models[:: max(1, len(models) // opts.compare)][: opts.compare])
            print(deploy(pool, sample, env), end="", flush=True)
            time.sleep(3)
            api.read_phase()
            database_before = database_figures(cluster)
            before_runs = tree_cpu()
            started = time.perf_counter()
            ids = [submit(f"monitor/monitor-{m}", day) for m in sample]
            OBSERVER_REQUESTS.clear()
            compared = wait_for_runs(ids, timeout_seconds=max(600, 30 * len(sample)), poll=2.0)
            cpu = tree_cpu() - before_runs
            per_model = {
                "models": len(sample),
                "seconds": round(time.perf_counter() - started, 1),
                "cpu_seconds": round(cpu.tree, 1),
                "cpu_seconds_per_model": round(cpu.tree / len(sample), 2),
                "cpu_seconds_by_process": {k: round(v, 1) for k, v in cpu.by_child.items()},
                "states": sorted({r.state.name for r in compared}),
            }
            time.sleep(1)
            per_model["api_requests"] = sum((api.read_phase() - OBSERVER_REQUESTS).values())
            database = database_figures(cluster)
            per_model["sql_statements"] = (
                database["sql_statements"] - database_before["sql_statements"]
            )
            per_model["database_bytes"] = database["size_bytes"] - database_before["size_bytes"]
            per_model["database_rows_added"] = {
                t: n - database_before["rows"][t] for t, n in database["rows"].items()
            }
        print("verifying every model against a local per-model run ...", flush=True)
        checked = verify(settings, models, day, gateway.url, work / "per-model-lake")
    night: TreeCpu = after - before
    return {
        "mode": "fleet",
        "models": len(models),
        "slices": len(deployments),
        "workers": opts.workers,
        "worker_limit": opts.worker_limit,
        "night_seconds": round(seconds, 1),
        "night_cpu_seconds": round(night.tree, 1),
        "night_cpu_seconds_per_model": round(night.tree / len(models), 3),
        "submitting_script_cpu_seconds": round(night.own, 1),
        "night_cpu_seconds_by_process": {k: round(v, 1) for k, v in night.by_child.items()},
        "cpu_seconds_with_start_up": round(with_start_up.tree, 1),
        "cpu_seconds_with_start_up_per_model": round(with_start_up.tree / len(models), 3),
        "seconds_with_start_up": round(wall_with_start_up, 1),
        "api_requests": sum(requests.values()),
        "top_requests": requests.most_common(8),
        "sql_statements": sql,
        "database_bytes": database_bytes,
        "database_rows_added": grown,
        "runs": states,
        "runs_per_worker": [len(t) for t in taken],
        "prefect_server_rss_bytes": server_rss,
        "verification": checked,
        "per_model_runs": per_model,
    }


def report(f: dict[str, Any]) -> str:
    v = f["verification"]
    n = f["models"]
    return "\n".join([
        "",
        f"== fleet: {n} models x 1 night, {f['slices']} fleet runs, {f['workers']} workers "
        f"x limit {f['worker_limit']} ==",
        f"night: {f['night_seconds']:.1f} s wall; process tree {f['night_cpu_seconds']:.1f} CPU s "
        f"= {f['night_cpu_seconds_per_model']:.2f} CPU s per model-night (servers, workers, "
        f"flow runs; start-up not in it; the submitting script's own "
        f"{f['submitting_script_cpu_seconds']:.1f} s not in it)",
        f"with start-up (PostgreSQL, Prefect server, Pushgateway, Prometheus, deploy, workers): "
        f"{f['cpu_seconds_with_start_up']:.1f} CPU s = "
        f"{f['cpu_seconds_with_start_up_per_model']:.2f} per model-night, "
        f"{f['seconds_with_start_up']:.0f} s wall (verification not in either)",
        "night's CPU s by process (with its children): "
        + ", ".join(f"{k} {v:.1f}" for k, v in f["night_cpu_seconds_by_process"].items()),
        f"Prefect API requests {f['api_requests']} ({f['api_requests'] / n:.1f} per model); "
        f"SQL statements {f['sql_statements']} ({f['sql_statements'] / n:.1f} per model)",
        f"Prefect database +{f['database_bytes'] / 1e6:.1f} MB; rows added "
        f"{f['database_rows_added']}",
        f"runs: {f['runs']}; runs per worker {f['runs_per_worker']}",
        f"verified all {v['models']} models against a per-model local run: "
        f"{len(v['lake_differences'])} result.json differences, {len(v['push_differences'])} "
        f"push differences ({v['groups']} Pushgateway groups)",
        "top requests: " + ", ".join(f"{k} {c}" for k, c in f["top_requests"]),
        *_compared(f["per_model_runs"]),
    ])  # fmt: skip


def _compared(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    n = p["models"]
    return [
        f"the same night as {n} per-model flow runs (monitor/monitor-<model>, {p['states']}): "
        f"{p['seconds']:.1f} s wall, {p['cpu_seconds']:.1f} CPU s = "
        f"{p['cpu_seconds_per_model']:.2f} per model-night; {p['api_requests'] / n:.1f} API "
        f"requests and {p['sql_statements'] / n:.0f} SQL statements per model; Prefect database "
        f"+{p['database_bytes'] / 1e6:.1f} MB, rows added {p['database_rows_added']}; by process: "
        + ", ".join(f"{k} {v:.1f}" for k, v in p["cpu_seconds_by_process"].items())
    ]

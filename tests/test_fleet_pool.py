"""The fleet on a process work pool: `deploy --slices` registers one nightly fleet deployment
per slice, and process workers run them on a PostgreSQL-backed Prefect server, each model
written and pushed as its own run would be."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from scripts.fleet.fleet import START, build_fleet, expected_samples, local_results, per_model_run
from scripts.fleet.fleet import pushgateway_groups as groups_of
from scripts.fleet.night import deploy_slices, fleet_deployments, submit
from scripts.fleet.processes import runs_taken, wait_for_runs, workers
from tests import procs
from tests.postgres import postgres, prefect_server

MODELS = ("gem-a", "gem-b", "gem-c")
DAY = START + timedelta(days=1)
POOL = "driftline-fleet-test"


@pytest.mark.e2e
@pytest.mark.prefect
@pytest.mark.timeout(420)
def test_deploy_with_slices_registers_fleet_runs_that_process_workers_run_as_per_model_runs(
    tmp_path: Path, diamonds_registry: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    shutil.copytree(diamonds_registry, tmp_path / "registry")
    lake_env = {
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
        "DRIFTLINE_CACHE_DIR": str(tmp_path / "cache"),
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
    }
    settings = load_settings(lake_env)
    build_fleet(settings, MODELS, days=2, rows_per_day=300, distinct=1)

    with (
        postgres(log=tmp_path / "postgres.log") as cluster,
        prefect_server(cluster, tmp_path / "prefect") as server,
        procs.pushgateway(tmp_path) as gateway,
    ):
        env = {
            **os.environ,
            **lake_env,
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(tmp_path / "client"),
            "PUSHGATEWAY_URL": gateway.url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        printed = deploy_slices(POOL, MODELS, 2, env)
        deployed = fleet_deployments(printed)
        assert deployed == ["fleet/fleet-1-of-2", "fleet/fleet-2-of-2"]
        assert "monitor/" not in printed  # the slices replace the per-model nightly runs
        with (
            workers(POOL, 2, 1, env, tmp_path / "workers") as started,
            temporary_settings({PREFECT_API_URL: server.api_url}),
        ):
            with get_client(sync_client=True) as client:
                slices = [client.read_deployment_by_name(name) for name in deployed]
            ids = [submit(name, DAY) for name in deployed]
            runs = wait_for_runs(ids, timeout_seconds=300)
        taken = runs_taken([w.out for w in started])
        groups = groups_of(gateway.url)

    assert [d.parameters["models"] for d in slices] == [["gem-a", "gem-c"], ["gem-b"]]
    assert [d.global_concurrency_limit.limit for d in slices if d.global_concurrency_limit] == [
        1,
        1,
    ]
    assert {r.name: r.state.name for r in runs} == {
        f"fleet-1-of-2-{DAY}": "Completed",
        f"fleet-2-of-2-{DAY}": "Completed",
    }
    assert sorted(n for t in taken for n in t) == sorted(r.name for r in runs)
    lake = Lake.open(settings.data_lake_uri)
    for model in MODELS:
        stored = lake.read_bytes(lake.result_path(model, DAY))
        assert stored == per_model_run(settings, model, DAY, tmp_path / "per-model"), model
        (result,) = local_results(settings, model, [DAY])
        assert groups[model] == expected_samples(result), model

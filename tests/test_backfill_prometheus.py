"""End to end: backfilled history lands in a real Prometheus at event time and continues live.

Starts Prometheus 2.x and the Pushgateway from PATH on free loopback ports (tests/procs.py; a
missing binary fails the test), backfills 60 simulated days into Prometheus' data directory with
the command line, then compares what Prometheus holds with what the lake holds.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from tasks.export import catalogue as metrics
from tasks.export import pushgateway
from tasks.export.history import scheduled_run_seconds
from tasks.results.day import from_json
from tests import procs
from tests.conftest import run_cli
from tests.procs import Server, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.prefect]

MODEL = "diamonds-price"
PUSHGATEWAY_OWN = {"push_time_seconds", "push_failure_time_seconds"}
Key = tuple[str, frozenset[tuple[str, str]]]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Prometheus:
    """The test's Prometheus: a `Server` and the queries the test asks it."""

    def __init__(self, server: Server, data: Path) -> None:
        self.server, self.data, self.url = server, data, server.url

    def restart(self) -> None:
        self.server.restart()

    def query(self, query: str, at: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": query, "time": f"{at:.3f}"})
        return get_json(f"{self.url}/api/v1/query?{params}")["data"]["result"]

    def query_range(self, query: str, start: float, end: float, step: str) -> list[Any]:
        params = urllib.parse.urlencode(
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        )
        return get_json(f"{self.url}/api/v1/query_range?{params}")["data"]["result"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, str]]:
    """A Prometheus scraping a Pushgateway with honor_labels, both on free loopback ports."""
    with procs.pushgateway(tmp_path) as gateway:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['{gateway.address}']}}]\n"
        )
        data = tmp_path / "prometheus-data"
        with procs.prometheus(
            config,
            data,
            "--storage.tsdb.retention.time=400d",  # history is older than the 15d default
            "--web.enable-admin-api",  # lets a rerun delete the samples it replaces
        ) as server:
            yield Prometheus(server, data), gateway.url


def history_in_prometheus(prom: Prometheus, days: list[date]) -> dict[Key, dict[float, float]]:
    """Every sample of the model's series from the first scheduled time to the last."""
    first, last = scheduled_run_seconds(days[0]), scheduled_run_seconds(days[-1])
    span = f"{int(last - first) + 1}s"
    out: dict[Key, dict[float, float]] = {}
    for series in prom.query(f'{{job="ml_monitoring",model="{MODEL}"}}[{span}]', at=last):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        if name in PUSHGATEWAY_OWN:
            continue
        out[(name, frozenset(labels.items()))] = {
            float(t): float(v) for t, v in series["values"] if float(t) >= first
        }
    return out


def history_in_lake(lake: Lake, days: list[date]) -> dict[Key, dict[float, float]]:
    """The same gauges built from the results the lake holds (run duration aside: not kept)."""
    out: dict[Key, dict[float, float]] = {}
    for day in days:
        payload = lake.read_bytes(lake.result_path(MODEL, day))
        assert payload is not None, f"no result in the lake for {day}"
        at = scheduled_run_seconds(day)
        stamp = metrics.RunStamp(finished_at_seconds=at, duration_seconds=0.0)
        for family in metrics.metric_families(from_json(payload), stamp, with_group_labels=True):
            for sample in family.samples:
                out.setdefault((sample.name, frozenset(sample.labels.items())), {})[at] = (
                    sample.value
                )
    return out


def without_duration(history: dict[Key, dict[float, float]]) -> dict[Key, dict[float, float]]:
    return {k: v for k, v in history.items() if k[0] != "ml_monitoring_run_duration_seconds"}


def test_backfilled_history_lands_at_event_time_and_continues_live(
    prometheus: tuple[Prometheus, str], trained_env: dict[str, str], tmp_path: Path
) -> None:
    prom, gateway = prometheus
    env = {
        **trained_env,
        "PROMETHEUS_URL": prom.url,
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # a busy 2-core machine
    }
    settings = load_settings(env)
    lake = Lake.open(settings.data_lake_uri)
    end = datetime.now(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=59)
    days = [start + timedelta(days=i) for i in range(60)]
    commands.simulate(
        settings, model=MODEL, start=start, days=60, rows_per_day=300, scenario="both", seed=0
    )

    # 60 days into the data directory of the running Prometheus, which loads them on its own
    done = run_cli(
        "backfill", "--start", str(start), "--end", str(end), "--prometheus-data",
        str(prom.data), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = history_in_lake(lake, days)
    wait_for(
        lambda: without_duration(history_in_prometheus(prom, days)) == without_duration(expected),
        timeout_seconds=90,
        what="Prometheus to load the backfilled blocks",
        tolerating=(OSError,),
    )
    held = history_in_prometheus(prom, days)
    schedule = {scheduled_run_seconds(d) for d in days}
    (rows,) = [v for k, v in held.items() if k[0] == "ml_batch_rows"]
    assert set(rows) == schedule and set(rows.values()) == {300.0}
    (duration,) = [v for k, v in held.items() if k[0] == "ml_monitoring_run_duration_seconds"]
    assert set(duration) == schedule and all(0 < v < 60 for v in duration.values())
    # a range query at one step per day sees one value per day, the batch's own day
    series = prom.query_range(
        f'ml_batch_timestamp_seconds{{model="{MODEL}"}}',
        min(schedule),
        max(schedule),
        "1d",
    )
    assert [(float(t), float(v)) for t, v in series[0]["values"]] == [
        (scheduled_run_seconds(d), metrics.day_start_seconds(d)) for d in days
    ]

    # a live push of the last day continues the very same series: identical label sets
    latest = from_json(lake.read_bytes(lake.result_path(MODEL, end)) or b"")
    pushed_at = time.time()
    pushgateway.push(latest, metrics.RunStamp(pushed_at, 1.0), gateway=gateway)
    wait_for(
        lambda: prom.query(f'ml_batch_rows{{model="{MODEL}"}}', at=time.time()),
        timeout_seconds=30,
        what="the pushed gauges to be scraped",
        tolerating=(OSError,),
    )
    last_day = {k for k, v in held.items() if scheduled_run_seconds(end) in v}

    def live_series() -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return {
            (
                s["metric"]["__name__"],
                frozenset((k, v) for k, v in s["metric"].items() if k != "__name__"),
            )
            for s in prom.query(f'{{job="ml_monitoring",model="{MODEL}"}}', at=time.time())
            if s["metric"]["__name__"] not in PUSHGATEWAY_OWN
        }

    # the first scrape after the push can land before every series is queryable: wait for it
    wait_for(
        lambda: live_series() == last_day,
        timeout_seconds=30,
        what="the live series",
        tolerating=(OSError,),
    )
    live = live_series()
    assert live == last_day
    assert not any(dict(labels).get("instance") for _, labels in live)

    # re-simulate 5 days with other data, rerun those days: they change, nothing else does
    before = {d: lake.read_bytes(lake.result_path(MODEL, d)) for d in days}
    changed = days[40:45]
    commands.simulate(
        settings, model=MODEL, start=changed[0], days=5, rows_per_day=300, scenario="both", seed=99
    )
    done = run_cli(
        "backfill", "--start", str(changed[0]), "--end", str(changed[-1]),
        "--prometheus-data", str(prom.data), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    after = {d: lake.read_bytes(lake.result_path(MODEL, d)) for d in days}
    assert [d for d in days if after[d] != before[d]] == changed
    prom.restart()  # or wait up to a minute for Prometheus to load the new blocks itself
    now_held = without_duration(history_in_prometheus(prom, days))
    now_expected = without_duration(history_in_lake(lake, days))
    assert now_held == now_expected
    old_held = without_duration(held)
    moved = [d for d in days if values_at(old_held, d) != values_at(now_held, d)]
    assert moved == changed


def values_at(history: dict[Key, dict[float, float]], day: date) -> dict[Key, float]:
    at = scheduled_run_seconds(day)
    return {key: samples[at] for key, samples in history.items() if at in samples}

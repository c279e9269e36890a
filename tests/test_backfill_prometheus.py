"""End to end: backfilled history lands in a real Prometheus at event time and continues live.

Starts Prometheus 2.x and the Pushgateway from PATH on free loopback ports (a missing binary fails
the test), backfills 60 simulated days into Prometheus' data directory with the command line,
then compares what Prometheus holds with what the lake holds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from tasks import metrics, pushgateway
from tasks.history import scheduled_run_seconds
from tasks.results import from_json
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

MODEL = "diamonds-price"
PUSHGATEWAY_OWN = {"push_time_seconds", "push_failure_time_seconds"}
Key = tuple[str, frozenset[tuple[str, str]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH; install it (Debian: apt install {name})")
    return found


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Process:
    """A binary started on loopback, stopped by its pid."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=out)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=30)
        self.popen = None


class Prometheus:
    def __init__(self, tmp: Path, pushgateway: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tmp / "prometheus-data"
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['{pushgateway}']}}]\n"
        )
        self.process = Process(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data}",
                "--storage.tsdb.retention.time=400d",  # history is older than the 15d default
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-admin-api",  # lets a rerun delete the samples it replaces
            ],
            tmp / "prometheus.log",
        )

    def start(self) -> None:
        self.process.start()
        wait_until(self.ready, timeout=60, what="Prometheus to be ready")

    def restart(self) -> None:
        self.process.stop()
        self.start()

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return response.status == 200

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
    port = free_port()
    gateway = Process(
        [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "pushgateway.log",
    )
    gateway.start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{port}")
    try:
        prom.start()
        yield prom, f"http://127.0.0.1:{port}"
    finally:
        prom.process.stop()
        gateway.stop()


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
    wait_until(
        lambda: without_duration(history_in_prometheus(prom, days)) == without_duration(expected),
        timeout=90,
        what="Prometheus to load the backfilled blocks",
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
    wait_until(
        lambda: bool(prom.query(f'ml_batch_rows{{model="{MODEL}"}}', at=time.time())),
        timeout=30,
        what="the pushed gauges to be scraped",
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
    wait_until(lambda: live_series() == last_day, timeout=30, what="the live series")
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

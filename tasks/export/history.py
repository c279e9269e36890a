"""History at event time: the live gauges of past runs, stamped when each run was scheduled.

The Pushgateway refuses timestamps and Prometheus stamps what it scrapes with the scrape time, so
history cannot go through it. Instead the gauges of every replayed day
(`tasks.export.catalogue`, with the job and model labels the Pushgateway's grouping key gives
live series) are written as OpenMetrics by prometheus_client, and `promtool tsdb
create-blocks-from openmetrics` turns them into TSDB blocks that are moved into Prometheus' data
directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest

from core.errors import InputError, RunError
from core.files import write_bytes_atomically
from core.settings import NIGHTLY_RUN_TIME_UTC
from tasks.export.catalogue import JOB, RunStamp, metric_families, registry_for
from tasks.results.day import MonitoringResult

# promtool cuts 2h blocks by default: one block per day of history, and a pass over the file for
# each. It aligns larger blocks to Prometheus' compaction ranges (486h for this bound), the size
# Prometheus itself compacts long-retained data to.
MAX_BLOCK_DURATION = "744h"


def scheduled_run_seconds(batch_date: date) -> float:
    """When the nightly run for `batch_date` is scheduled: D+1 at NIGHTLY_RUN_TIME_UTC (Unix s)."""
    return datetime.combine(batch_date + timedelta(days=1), NIGHTLY_RUN_TIME_UTC, UTC).timestamp()


@dataclass(frozen=True)
class PastRun:
    """A replayed day's result and how long its replay took."""

    result: MonitoringResult
    duration_seconds: float


def history_families(runs: Iterable[PastRun]) -> list[Metric]:
    """Every gauge of every run, each stamped at its scheduled time: one family per name,
    samples grouped per series and ordered by time within it."""
    merged: dict[str, Metric] = {}
    for run in runs:
        scheduled = scheduled_run_seconds(run.result.batch_date)
        stamp = RunStamp(finished_at_seconds=scheduled, duration_seconds=run.duration_seconds)
        for family in metric_families(
            run.result, stamp, timestamp=scheduled, with_group_labels=True
        ):
            into = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            into.samples.extend(family.samples)
    for family in merged.values():
        family.samples.sort(key=lambda s: (sorted(s.labels.items()), s.timestamp or 0.0))
    return [merged[name] for name in sorted(merged)]


def openmetrics_text(families: Sequence[Metric]) -> bytes:
    """The OpenMetrics exposition of `families`, ending in `# EOF`."""
    return generate_latest(registry_for(families))


def write_openmetrics(path: Path, payload: bytes) -> None:
    """Write the file beside its target and move it into place."""
    write_bytes_atomically(path, payload)


def promtool_path() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise RunError(
            "promtool not found on PATH; install Prometheus' promtool (Debian: apt install "
            "prometheus), or write the history with --openmetrics FILE and run "
            "`promtool tsdb create-blocks-from openmetrics FILE DATA_DIR` where promtool is"
        )
    return found


def create_blocks(openmetrics_file: Path, data_dir: Path) -> list[str]:
    """TSDB blocks from an OpenMetrics file, moved into `data_dir`; returns their names.

    promtool writes into a staging folder inside `data_dir` (Prometheus loads only folders named
    like block ULIDs), and each finished block is renamed into place, so Prometheus never sees
    half a block.
    """
    promtool = promtool_path()
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(f"--prometheus-data {data_dir} is a file; pass Prometheus' data directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".driftline-blocks-", dir=data_dir))
    try:
        done = subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                f"--max-block-duration={MAX_BLOCK_DURATION}",  # hidden flag, in 2.x since 2.24
                str(openmetrics_file),
                str(staging),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise RunError(
                f"promtool could not turn {openmetrics_file} into blocks: "
                f"{detail[-1] if detail else f'exit status {done.returncode}'}"
            )
        blocks = sorted(p.name for p in staging.iterdir() if p.is_dir())
        for name in blocks:
            os.replace(staging / name, data_dir / name)
        return blocks
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# Replacing days already in Prometheus -------------------------------------------------------
def _series_selector(model: str) -> str:
    return f'{{job="{JOB}",model="{model}"}}'


def _request(url: str, *, method: str = "GET", timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def days_held(prometheus_url: str, model: str, days: Sequence[date]) -> list[date]:
    """The days for which Prometheus already holds a sample of the model at the scheduled time."""
    held = []
    for day in days:
        at = scheduled_run_seconds(day)
        # the raw samples of a 1ms range ending at the scheduled time: exactly those stamped then
        params = urllib.parse.urlencode(
            {"query": f"{_series_selector(model)}[1ms]", "time": f"{at:.3f}"}
        )
        status, body = _request(f"{prometheus_url.rstrip('/')}/api/v1/query?{params}")
        if status != 200:
            raise RunError(
                f"Prometheus at {prometheus_url} answered HTTP {status} to a query: "
                f"{body[:200].decode(errors='replace')}"
            )
        series = json.loads(body)["data"]["result"]
        if any(float(t) == at for s in series for t, _ in s["values"]):
            held.append(day)
    return held


def delete_days(prometheus_url: str, model: str, days: Sequence[date]) -> bool:
    """Delete the model's samples stamped at the days' scheduled times, through the admin API.

    Two samples of a series at the same time in two blocks are merged in no defined order, so a
    rerun must remove the earlier samples before its blocks arrive. Only the samples at those
    exact timestamps are deleted; live samples scraped around them stay. Returns False when the
    admin API is disabled (Prometheus without --web.enable-admin-api).
    """
    base = f"{prometheus_url.rstrip('/')}/api/v1/admin/tsdb/delete_series"
    for day in days:
        at = f"{scheduled_run_seconds(day):.3f}"
        params = urllib.parse.urlencode(
            {"match[]": _series_selector(model), "start": at, "end": at}
        )
        status, body = _request(f"{base}?{params}", method="POST")
        if status in (200, 204):
            continue
        if status in (404, 405, 503) or b"admin APIs disabled" in body:
            return False
        raise RunError(
            f"Prometheus at {prometheus_url} refused to delete the history of {day}: "
            f"HTTP {status} {body[:200].decode(errors='replace')}"
        )
    return True


def clear_days(prometheus_url: str, model: str, days: Sequence[date]) -> str:
    """Make room for the days' new samples; says what was done, raises when it cannot be done."""
    try:
        if delete_days(prometheus_url, model, days):
            return f"deleted earlier samples of those days through {prometheus_url}"
        held = days_held(prometheus_url, model, days)
    except (urllib.error.URLError, OSError) as exc:
        return (
            f"Prometheus at {prometheus_url} not reachable ({exc}): earlier samples of these "
            "days, if any, were not deleted (see docs/backfill.md)"
        )
    if held:
        first, last = scheduled_run_seconds(held[0]), scheduled_run_seconds(held[-1])
        raise RunError(
            f"Prometheus at {prometheus_url} already holds history of model {model!r} for "
            f"{len(held)} of these days ({held[0]}..{held[-1]}) and its admin API is disabled; "
            "old and new samples at the same time would be merged in no defined order. Start "
            "Prometheus with --web.enable-admin-api, or delete them first: curl -X POST -g "
            f"'{prometheus_url.rstrip('/')}/api/v1/admin/tsdb/delete_series?match[]="
            f"{_series_selector(model)}&start={first:.0f}&end={last:.0f}'"
        )
    return "no earlier samples of these days in Prometheus"

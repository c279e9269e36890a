"""What the chaos year reads: Prometheus' history and live values, the lake, a small disk."""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from scripts.faults.world import EXCLUDED_HISTORY, EXCLUDED_LIVE, GROUP, SELECTOR
from tasks.export.catalogue import day_start_seconds
from tasks.export.history import scheduled_run_seconds

# --- Prometheus -------------------------------------------------------------------------------


def prom_get(base: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def series_key(metric: dict[str, str]) -> str:
    labels = ",".join(f"{k}={v!r}" for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric['__name__']}{{{labels}}}"


def history_at(base: str, day: date) -> dict[str, str]:
    """The model's samples stamped exactly at the day's scheduled run time."""
    at = scheduled_run_seconds(day)
    data = prom_get(base, "/api/v1/query", {"query": f"{SELECTOR}[1ms]", "time": f"{at:.3f}"})
    found = {}
    for series in data["result"]:
        if series["metric"]["__name__"] in EXCLUDED_HISTORY:
            continue
        for t, value in series["values"]:
            if float(t) == at:
                found[series_key(series["metric"])] = value
    return found


def live_values(base: str) -> dict[str, str]:
    data = prom_get(base, "/api/v1/query", {"query": SELECTOR})
    return {
        series_key(s["metric"]): s["value"][1]
        for s in data["result"]
        if s["metric"]["__name__"] not in EXCLUDED_LIVE
    }


def wait_live_day(base: str, day: date, timeout: float = 120) -> None:
    """Until Prometheus has scraped the push of `day` (its batch timestamp)."""
    want = day_start_seconds(day)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            data = prom_get(
                base, "/api/v1/query", {"query": f"ml_batch_timestamp_seconds{{{GROUP}}}"}
            )
            if any(float(s["value"][1]) == want for s in data["result"]):
                return
        time.sleep(1)
    raise RuntimeError(f"{base} did not scrape the push of {day} within {timeout:.0f} s")


def wait_history(base: str, day: date, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            if history_at(base, day):
                return
        time.sleep(1)


# --- the lake's small disk ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    size = f"size={max(size_bytes // 1024, 1024)}k"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"chaos: cannot mount a tmpfs on {directory} for the lake ({done.stderr.strip()}); "
            "run as root"
        )
    try:
        yield directory
    finally:
        for _ in range(10):
            if subprocess.run(["umount", str(directory)], check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Take all but `leave` bytes of the filesystem with one file."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(mount).free
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        if free - leave > 0:
            os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)


def free_disk(mount: Path) -> None:
    (mount / "filler").unlink(missing_ok=True)


def tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def lake_differences(a: Path, b: Path) -> list[str]:
    """Files present in one lake only or with different bytes; hidden files are not data."""
    ta = {k: v for k, v in tree(a).items() if not any(s.startswith(".") for s in k.split("/"))}
    tb = {k: v for k, v in tree(b).items() if not any(s.startswith(".") for s in k.split("/"))}
    out = [f"only in {a.name}: {k}" for k in sorted(ta.keys() - tb.keys())]
    out += [f"only in {b.name}: {k}" for k in sorted(tb.keys() - ta.keys())]
    out += [
        f"differs: {k}"
        for k in sorted(ta.keys() & tb.keys())
        if not filecmp.cmp(ta[k], tb[k], shallow=False)
    ]
    return out


def leftovers(lake: Path) -> list[str]:
    return [k for k in tree(lake) if any(s.startswith(".") for s in k.split("/"))]

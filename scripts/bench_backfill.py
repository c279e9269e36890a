"""Time a backfill of a year of daily batches against a running Prefect server.

    .venv/bin/python scripts/bench_backfill.py [--days 365] [--rows-per-day 20000] [--workdir DIR]

Sets up a private lake and registry (train, then simulate; kept in --workdir for reruns), starts
`prefect server start` on a free loopback port, runs `driftline backfill` with the history going
into a Prometheus data directory, prints the wall time of that command, and stops the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

from core.settings import prefect_environment
from driftline.stack.launcher import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_healthy(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"Prefect server at {url} did not become healthy in {timeout:.0f} s")


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, help="keep the lake here (default: a temp dir)")
    opts = parser.parse_args()
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    end = date.today() - timedelta(days=1)
    start = end - timedelta(days=opts.days - 1)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "DATA_LAKE_URI": str(work / "lake"),
        "MODEL_REGISTRY_URI": str(work / "registry"),
        "PROMETHEUS_URL": "http://127.0.0.1:9",  # no Prometheus to clear earlier samples in
    }
    prefect_environment(env)
    marker = work / f"simulated-{start}-{opts.days}-{opts.rows_per_day}"
    if not marker.exists():
        print(f"setting up {opts.days} days of {opts.rows_per_day} rows in {work} ...", flush=True)
        run([str(BIN / "driftline"), "train"], env)
        run(
            [str(BIN / "driftline"), "simulate", "--start", start.isoformat(),
             "--days", str(opts.days), "--rows-per-day", str(opts.rows_per_day),
             "--scenario", "both"],
            env,
        )  # fmt: skip
        marker.touch()
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_healthy(api)
        command = [
            str(BIN / "driftline"), "backfill", "--start", start.isoformat(),
            "--end", end.isoformat(), "--prometheus-data", str(work / "prometheus-data"),
        ]  # fmt: skip
        seconds = run(command, {**env, "PREFECT_API_URL": api})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(
        f"backfill of {opts.days} days x {opts.rows_per_day} rows against a Prefect server: "
        f"{seconds:.1f} s ({' '.join(command[1:])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One world: a lake, a local stack and its runs, started and stopped by their pids."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core import processes
from driftline import stack

REPO = Path(__file__).resolve().parents[2]

MODEL = "diamonds-price"
# the series driftline pushes or backfills; Prometheus' own ALERTS series carry the same labels
GROUP = f'job="ml_monitoring",model="{MODEL}"'
SELECTOR = f'{{{GROUP},__name__=~"ml_.+|push_.+"}}'
EXCLUDED_HISTORY = frozenset({"ml_monitoring_run_duration_seconds"})
EXCLUDED_LIVE = EXCLUDED_HISTORY | {
    "ml_monitoring_last_success_timestamp_seconds",
    "push_time_seconds",
    "push_failure_time_seconds",
}
# relative weights of the faults drawn for a night
WEIGHTS = {
    "kill": 30,
    "pushgateway-down": 12,
    "prometheus-down": 8,
    "prefect-down": 8,
    "prefect-crash": 3,
    "lake-unreachable": 12,
    "batch-late": 12,
    "disk-full": 15,
}
OUTAGES = {"pushgateway-down", "prometheus-down", "prefect-down", "disk-full"}


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


# --- one world: a lake, a stack, its runs -------------------------------------------------------


@dataclass
class World:
    name: str
    root: Path
    lake: Path
    registry: Path
    config: stack.StackConfig
    env: dict[str, str] = field(default_factory=dict)

    def url(self, component: stack.Component) -> str:
        return self.config.url(component)

    def start(self, prefect_api: str) -> None:
        stack.up(self.config, timeout_seconds=180)
        prefect_home = self.root / "prefect-client"
        prefect_home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATA_LAKE_URI": str(self.lake),
            "MODEL_REGISTRY_URI": str(self.registry),
            "PUSHGATEWAY_URL": self.url("pushgateway"),
            "PROMETHEUS_URL": self.url("prometheus"),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(prefect_home),
            "DRIFTLINE_PUSH_RETRY_DELAYS": "0.5,1",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def stop_component(self, component: stack.Component, sig: signal.Signals) -> None:
        """Stop one component by the pid the stack recorded (it leads its own session)."""
        (found,) = [s for s in stack.status(self.config.state_dir) if s.name == component]
        if found.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(found.pid, sig)
        deadline = time.monotonic() + 30
        while processes.is_alive(found.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if processes.is_alive(found.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(found.pid, signal.SIGKILL)
            while processes.is_alive(found.pid):
                time.sleep(0.05)

    def start_stopped(self) -> None:
        """`driftline stack up` for what is not running. Its readiness wait can judge a process
        it has just started as not its own while /proc still shows the pre-exec argv (seen when
        one component alone is started); asked again, it finds the process and waits for it."""
        for attempt in range(5):
            try:
                stack.up(self.config, timeout_seconds=180)
                return
            except stack.StackError as error:
                if attempt == 4:
                    raise
                log(f"stack up: {str(error).splitlines()[0]}; asking again")
                time.sleep(1)

    def driftline(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.out").open("ab") as out, (logs / f"{name}.err").open("ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "driftline", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )

    def last_error(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.err"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        mine = [line for line in lines if line.startswith("driftline: error:")]
        return (mine or lines or [""])[-1][:300]


def finish(proc: subprocess.Popen[bytes], timeout: float = 900) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return -9


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

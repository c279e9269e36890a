"""Live-stack fixtures: Prometheus, Pushgateway, Alertmanager on free loopback ports, a webhook.

The components run with the argv and configs `driftline stack up` renders (driftline.stack), but
are started and stopped by pid through the tests' one launcher (tests/procs.py).

Use from tests/conftest.py with `pytest_plugins = ["tests.stack_fixtures"]`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from driftline import stack
from tests.conftest import REPO, run_cli
from tests.procs import Server, free_port, serving, wait_for

REPO_ROOT = REPO

# The scenario every live test reads: 21 simulated days with data and concept drift.
SIM_START = date(2026, 1, 1)
SIM_DAYS = 21
SIM_LAST_DAY = date(2026, 1, 21)
MODEL = "diamonds-price"


# --- Prometheus HTTP API -------------------------------------------------------------------------


def _get_json(url: str, params: dict[str, str]) -> dict[str, Any]:
    full = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(full, timeout=10) as response:
        body: dict[str, Any] = json.load(response)
    if body.get("status") != "success":
        raise AssertionError(f"{full} answered {body}")
    return body


def prom_query(prometheus_url: str, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """Run an instant query; return the result vector."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    body = _get_json(f"{prometheus_url}/api/v1/query", params)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def prom_query_range(
    prometheus_url: str, expr: str, *, start: float, end: float, step_seconds: float
) -> list[dict[str, Any]]:
    """Run a range query; return the result matrix."""
    params = {
        "query": expr,
        "start": f"{start:.3f}",
        "end": f"{end:.3f}",
        "step": f"{step_seconds}",
    }
    body = _get_json(f"{prometheus_url}/api/v1/query_range", params)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def prom_label_values(prometheus_url: str, label: str, match: str) -> list[str]:
    """Return the values of `label` on series matching `match` (what label_values() asks)."""
    body = _get_json(f"{prometheus_url}/api/v1/label/{label}/values", {"match[]": match})
    values: list[str] = body["data"]
    return values


def firing_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Return Prometheus' alerts in state firing."""
    body = _get_json(f"{prometheus_url}/api/v1/alerts", {})
    return [a for a in body["data"]["alerts"] if a["state"] == "firing"]


# --- the test's Alertmanager webhook receiver ----------------------------------------------------


class WebhookReceiver:
    """Collects Alertmanager webhook notifications posted to a loopback HTTP server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver._notifications.append(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's output to the test results

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def notifications(self) -> list[dict[str, Any]]:
        """Return every notification received so far."""
        with self._lock:
            return list(self._notifications)

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        """Return every alert with this status across all notifications."""
        return [
            alert
            for notification in self.notifications()
            for alert in notification.get("alerts", [])
            if alert.get("status") == status
        ]

    def wait_for_alert(
        self, alertname: str, *, timeout_seconds: float = 60.0, **labels: str
    ) -> dict[str, Any]:
        """Wait until a firing alert with this name and these labels arrives; return it."""

        def matching() -> dict[str, Any] | None:
            for alert in self.alerts():
                got = alert.get("labels", {})
                if got.get("alertname") == alertname and all(
                    got.get(k) == v for k, v in labels.items()
                ):
                    return alert
            return None

        received = sorted({a["labels"].get("alertname", "?") for a in self.alerts()})
        return wait_for(
            matching,
            timeout_seconds=timeout_seconds,
            what=f"webhook notification {alertname} {labels} (received so far: {received})",
        )


# --- the stack, started and stopped by the tests' launcher ----------------------------------------


def loopback_config(state_dir: Path, **overrides: Any) -> stack.StackConfig:
    """A stack config on free loopback ports, its state (and Pushgateway file) in `state_dir`."""
    return stack.StackConfig(
        state_dir=state_dir.resolve(),
        prometheus_port=free_port(),
        pushgateway_port=free_port(),
        alertmanager_port=free_port(),
        **overrides,
    )


@dataclass(frozen=True)
class LocalStack:
    """The three components `driftline stack up` would start, each a `Server` stopped by pid."""

    config: stack.StackConfig
    servers: Mapping[stack.Component, Server]

    def url(self, component: stack.Component) -> str:
        return self.config.url(component)

    def pids(self) -> set[int]:
        return {server.process.pid for server in self.servers.values()}

    def stop(self, component: stack.Component) -> None:
        """Stop one component by its pid (SIGTERM: the Pushgateway persists on exit)."""
        self.servers[component].stop()

    def start_stopped(self) -> None:
        """Start again, in `driftline stack up`'s order, the components that are not running."""
        for component in stack.COMPONENTS:
            if not self.servers[component].process.running():
                self.servers[component].start_again()


@contextlib.contextmanager
def local_stack(config: stack.StackConfig) -> Iterator[LocalStack]:
    """Render the infra/ configs for `config`, start the components with stack's argv, and stop
    them all (Prometheus first) when the block ends."""
    rendered = stack.render(config)
    with contextlib.ExitStack() as started:
        servers = {
            component: started.enter_context(
                serving(
                    stack.command_line(component, config, rendered),
                    config.port(component),
                    out=config.state_dir / f"{component}.log",
                    cwd=config.state_dir,
                )
            )
            for component in stack.COMPONENTS
        }
        yield LocalStack(config, servers)


@dataclass(frozen=True)
class LiveStack:
    """A running local stack and the webhook its Alertmanager notifies."""

    local: LocalStack
    webhook: WebhookReceiver

    @property
    def config(self) -> stack.StackConfig:
        return self.local.config

    @property
    def prometheus_url(self) -> str:
        return self.config.url("prometheus")

    @property
    def pushgateway_url(self) -> str:
        return self.config.url("pushgateway")

    @property
    def alertmanager_url(self) -> str:
        return self.config.url("alertmanager")


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server in this process that records Alertmanager's webhook posts."""
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def live_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver
) -> Iterator[LiveStack]:
    """Prometheus, Pushgateway and Alertmanager on free ports, tuned to alert within seconds."""
    config = loopback_config(
        tmp_path_factory.mktemp("stack"),
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_for="2s",
        webhook_url=webhook_receiver.url,
        alertmanager_group_wait="1s",
        alertmanager_group_interval="1s",
        alertmanager_repeat_interval="1m",
    )
    with local_stack(config) as started:
        yield LiveStack(local=started, webhook=webhook_receiver)


def driftline_env(stack_: LiveStack, workdir: Path) -> dict[str, str]:
    """Environment for `driftline` subprocesses: a fresh lake and registry, the live stack."""
    env = dict(os.environ)
    env.update(
        DATA_LAKE_URI=str(workdir / "lake"),
        MODEL_REGISTRY_URI=str(workdir / "registry"),
        PUSHGATEWAY_URL=stack_.pushgateway_url,
        PROMETHEUS_URL=stack_.prometheus_url,
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.setdefault("PREFECT_HOME", str(REPO_ROOT / "var" / "prefect"))
    return env


def run_driftline(env: dict[str, str], *args: str, timeout_seconds: float = 600) -> str:
    """Run the public CLI like a user would; fail with its output if it does not exit 0."""
    completed = run_cli(*args, env=env, timeout=timeout_seconds)
    if completed.returncode != 0:
        raise AssertionError(
            f"driftline {' '.join(args)} exited {completed.returncode}\n"
            f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}"
        )
    return completed.stdout


@dataclass(frozen=True)
class MonitoredStack:
    """The live stack after the pipeline pushed the last simulated day of drift."""

    live: LiveStack
    model: str
    workdir: Path


@pytest.fixture(scope="session")
def monitored_stack(
    live_stack: LiveStack, tmp_path_factory: pytest.TempPathFactory
) -> MonitoredStack:
    """Train, simulate data and concept drift, monitor the last day, and wait for the scrape."""
    workdir = tmp_path_factory.mktemp("pipeline")
    env = driftline_env(live_stack, workdir)
    run_driftline(env, "train")
    run_driftline(
        env,
        "simulate",
        "--start", SIM_START.isoformat(),
        "--days", str(SIM_DAYS),
        "--rows-per-day", "1000",
        "--scenario", "both",
        "--seed", "7",
    )  # fmt: skip
    run_driftline(env, "monitor", "--date", SIM_LAST_DAY.isoformat())
    wait_for(
        lambda: prom_query(
            live_stack.prometheus_url, f'ml_batch_rows{{job="ml_monitoring",model="{MODEL}"}}'
        ),
        timeout_seconds=30,
        what="Prometheus to scrape the pushed metrics",
    )
    return MonitoredStack(live=live_stack, model=MODEL, workdir=workdir)

"""The local stack's configuration: ports, state dir, the infra/ configs rewritten for loopback."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core.files import write_bytes_atomically
from core.settings import REPO_ROOT, stack_dir
from driftline import runner

Component = Literal["receiver", "pushgateway", "alertmanager", "prometheus", "prefect", "runner"]

# The monitoring services, in start order: Prometheus last, so its first scrape and first alert
# delivery find the others up.
COMPONENTS: tuple[Component, ...] = ("pushgateway", "alertmanager", "prometheus")
# `driftline stack up`: those, the receiver of Alertmanager's notifications before them, the
# Prefect server (UI and API) whose runs every command records while it is up, and the warm
# runner that serves `monitor` and `backfill` with their imports done (driftline.stack.runner).
LOCAL_STACK: tuple[Component, ...] = ("receiver", *COMPONENTS, "prefect", "runner")

# Debian's binary names; the Debian packages are named the same.
BINARIES: Mapping[Component, str] = {
    "prometheus": "prometheus",
    "pushgateway": "prometheus-pushgateway",
    "alertmanager": "prometheus-alertmanager",
}
RECEIVER_RECORD = "alerts.jsonl"

INFRA_DIR = REPO_ROOT / "infra"
STATE_FILE = "stack.json"


class StackError(RuntimeError):
    """The local stack could not be started, stopped or read."""


class MissingBinaryError(StackError):
    """A component's binary is not on PATH."""


def default_state_dir() -> Path:
    """DRIFTLINE_STACK_DIR, or var/stack under the repository root (git-ignored)."""
    return stack_dir()


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state, which ports it uses and what the tests override.

    `rule_for` replaces every alert's `for:` and the `alertmanager_*` durations replace the
    route timings, so tests see alerts in seconds. Without `alertmanager_secrets_dir` the Slack
    and e-mail receivers are left out and only the webhook (`webhook_url`) notifies.
    """

    state_dir: Path = field(default_factory=default_state_dir)
    prometheus_port: int = 9090
    pushgateway_port: int = 9091
    alertmanager_port: int = 9093
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    retention: str = "400d"
    receiver_port: int = 9095
    prefect_port: int = 4200
    components: tuple[Component, ...] = COMPONENTS
    rule_for: str | None = None
    # None keeps infra/'s webhook URL; `local()` points it at the stack's own receiver
    webhook_url: str | None = None
    alertmanager_group_wait: str | None = None
    alertmanager_group_interval: str | None = None
    alertmanager_repeat_interval: str | None = None
    alertmanager_secrets_dir: Path | None = None
    pushgateway_web_config: Path | None = None
    pushgateway_password_file: Path | None = None
    infra_dir: Path = INFRA_DIR

    @classmethod
    def local(cls) -> StackConfig:
        """What `driftline stack up` runs: every component on its usual port."""
        return cls(
            components=LOCAL_STACK, webhook_url=f"http://127.0.0.1:{cls.receiver_port}/alerts"
        )

    def port(self, component: Component) -> int:
        """Return the loopback port of a component."""
        return {
            "prometheus": self.prometheus_port,
            "pushgateway": self.pushgateway_port,
            "alertmanager": self.alertmanager_port,
            "receiver": self.receiver_port,
            "prefect": self.prefect_port,
            "runner": 0,  # a Unix socket in the state dir
        }[component]

    def url(self, component: Component) -> str:
        """Return the base URL of a component (the runner's: its Unix socket)."""
        if component == "runner":
            return f"unix:{runner.socket_path(self.state_dir)}"
        return f"http://127.0.0.1:{self.port(component)}"


def ready_url(component: Component, base_url: str) -> str:
    """Where a component answers 200 once it serves (the runner: its socket answers a ping)."""
    if component == "runner":
        return base_url
    return f"{base_url}/api/health" if component == "prefect" else f"{base_url}/-/ready"


def prefect_home(state_dir: Path) -> Path:
    """The stack's Prefect server keeps its SQLite database here."""
    return state_dir / "prefect"


# --- rendering: the infra/ configs, rewritten for loopback ---------------------------------------


def render_prometheus_config(base: Mapping[str, Any], config: StackConfig) -> dict[str, Any]:
    """Point the docker-compose scrape and alerting targets at the loopback ports."""
    rendered = copy.deepcopy(dict(base))
    targets = {
        "pushgateway:9091": f"127.0.0.1:{config.pushgateway_port}",
        "alertmanager:9093": f"127.0.0.1:{config.alertmanager_port}",
        "localhost:9090": f"127.0.0.1:{config.prometheus_port}",
    }
    rendered.setdefault("global", {})
    rendered["global"]["scrape_interval"] = config.scrape_interval
    rendered["global"]["evaluation_interval"] = config.evaluation_interval
    static_configs = [
        static
        for alertmanager in rendered.get("alerting", {}).get("alertmanagers", [])
        for static in alertmanager.get("static_configs", [])
    ]
    for job in rendered.get("scrape_configs", []):
        static_configs.extend(job.get("static_configs", []))
        if job.get("job_name") == "pushgateway" and config.pushgateway_password_file:
            job["basic_auth"] = {
                "username": "driftline",
                "password_file": str(config.pushgateway_password_file),
            }
    for static in static_configs:
        unknown = [t for t in static.get("targets", []) if t not in targets]
        if unknown:
            raise StackError(
                f"{config.infra_dir / 'prometheus' / 'prometheus.yml'} has target(s) {unknown} "
                f"that the local stack cannot map (expected {sorted(targets)})"
            )
        static["targets"] = [targets[t] for t in static["targets"]]
    return rendered


def render_rules(base: Mapping[str, Any], *, rule_for: str | None) -> dict[str, Any]:
    """Return the rule file with every alert's `for:` replaced when `rule_for` is given."""
    rendered = copy.deepcopy(dict(base))
    if rule_for is not None:
        for group in rendered.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rule["for"] = rule_for
    return rendered


def render_alertmanager_config(base: Mapping[str, Any], config: StackConfig) -> dict[str, Any]:
    """Redirect the webhooks, shorten the route timings and place or drop the secret files."""
    rendered = copy.deepcopy(dict(base))
    for receiver in rendered.get("receivers", []):
        if config.webhook_url is not None:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = config.webhook_url
        if config.alertmanager_secrets_dir is None:
            receiver.pop("slack_configs", None)
            receiver.pop("email_configs", None)
    global_config = rendered.get("global", {})
    for key in [k for k in global_config if k.endswith("_file")]:
        if config.alertmanager_secrets_dir is None:
            del global_config[key]
        else:
            name = Path(global_config[key]).name
            global_config[key] = str(config.alertmanager_secrets_dir / name)
    timings = {
        "group_wait": config.alertmanager_group_wait,
        "group_interval": config.alertmanager_group_interval,
        "repeat_interval": config.alertmanager_repeat_interval,
    }
    for route in _routes(rendered.get("route", {})):
        for key, value in timings.items():
            if value is not None:
                route[key] = value
    return rendered


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


@dataclass(frozen=True)
class RenderedConfigs:
    """Paths of the configs written into the state dir."""

    prometheus_config: Path
    alertmanager_config: Path
    rule_files: tuple[Path, ...]


def render(config: StackConfig) -> RenderedConfigs:
    """Write the loopback variants of the infra/ configs into the state dir."""
    prometheus_dir = config.state_dir / "prometheus"
    rules_dir = prometheus_dir / "rules"
    alertmanager_dir = config.state_dir / "alertmanager"
    for directory in (rules_dir, alertmanager_dir, config.state_dir / "pushgateway"):
        directory.mkdir(parents=True, exist_ok=True)

    base = _read_yaml(config.infra_dir / "prometheus" / "prometheus.yml")
    prometheus_config = prometheus_dir / "prometheus.yml"
    _write_yaml(prometheus_config, render_prometheus_config(base, config))

    for stale in rules_dir.glob("*.yml"):
        stale.unlink()
    rule_files = []
    for source in sorted((config.infra_dir / "prometheus" / "rules").glob("*.yml")):
        target = rules_dir / source.name
        _write_yaml(target, render_rules(_read_yaml(source), rule_for=config.rule_for))
        rule_files.append(target)

    alertmanager_config = alertmanager_dir / "alertmanager.yml"
    base = _read_yaml(config.infra_dir / "alertmanager" / "alertmanager.yml")
    _write_yaml(alertmanager_config, render_alertmanager_config(base, config))
    return RenderedConfigs(prometheus_config, alertmanager_config, tuple(rule_files))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise StackError(f"cannot read {path}: {error}") from error
    if not isinstance(loaded, dict):
        raise StackError(f"{path} should hold a YAML mapping, found {type(loaded).__name__}")
    return loaded


def _write_yaml(path: Path, content: Mapping[str, Any]) -> None:
    # whole or not at all, so a running Prometheus never reloads half a file
    write_bytes_atomically(path, yaml.safe_dump(dict(content), sort_keys=False).encode())


def command_line(component: Component, config: StackConfig, rendered: RenderedConfigs) -> list[str]:
    """Return the argv that starts one component on loopback."""
    if component == "receiver":
        record = config.state_dir / RECEIVER_RECORD
        return [
            sys.executable,
            "-m",
            "driftline.stack.receiver",
            f"--port={config.port(component)}",
            f"--record={record}",
        ]
    if component == "runner":
        return [
            sys.executable,
            "-m",
            "driftline.stack.runner",
            f"--socket={runner.socket_path(config.state_dir)}",
        ]
    if component == "prefect":
        # from the project's own environment, its database under the state dir (environment)
        return [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(config.port(component)),
        ]
    binary = find_binary(component)
    listen = f"--web.listen-address=127.0.0.1:{config.port(component)}"
    if component == "prometheus":
        return [
            binary,
            f"--config.file={rendered.prometheus_config}",
            f"--storage.tsdb.path={config.state_dir / 'prometheus' / 'data'}",
            f"--storage.tsdb.retention.time={config.retention}",
            "--web.enable-lifecycle",
            # backfill deletes the samples of days it rewrites before adding their new blocks
            "--web.enable-admin-api",
            listen,
        ]
    if component == "pushgateway":
        argv = [
            binary,
            f"--persistence.file={config.state_dir / 'pushgateway' / 'metrics.db'}",
            "--persistence.interval=1m",
            listen,
        ]
        if config.pushgateway_web_config is not None:
            argv.append(f"--web.config.file={config.pushgateway_web_config}")
        return argv
    return [
        binary,
        f"--config.file={rendered.alertmanager_config}",
        f"--storage.path={config.state_dir / 'alertmanager' / 'data'}",
        # An empty address turns gossip off: a single local instance opens no cluster port.
        "--cluster.listen-address=",
        listen,
    ]


def environment(component: Component, config: StackConfig) -> dict[str, str] | None:
    """The environment a component starts with (None: the caller's)."""
    if component != "prefect":
        return None
    return {
        **os.environ,
        "PREFECT_HOME": str(prefect_home(config.state_dir)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(config.port(component)),
    }


def is_ours(
    component: Component, argv: list[str], environ: dict[str, str] | None, state_dir: Path
) -> bool:
    """Whether a process runs this stack's component (a recycled pid must not get our SIGTERM):
    the binary and the state dir in its argv, or for the Prefect server its PREFECT_HOME."""
    if component == "prefect":
        home = (environ or {}).get("PREFECT_HOME")
        return "prefect" in argv and home == str(prefect_home(state_dir))
    if component in ("receiver", "runner"):
        return f"driftline.stack.{component}" in argv and str(state_dir) in " ".join(argv)
    return Path(argv[0]).name == BINARIES[component] and str(state_dir) in " ".join(argv)


def find_binary(component: Component) -> str:
    """Return the path of a component's binary or say how to install it."""
    if component not in BINARIES:
        return sys.executable
    name = BINARIES[component]
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(
            f"{name} not found on PATH (needed for the local {component}); "
            f"install it with: apt-get install {name}"
        )
    return path

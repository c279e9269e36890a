"""Starting, stopping and reporting the local stack's processes, each by the pid it recorded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from core import processes
from driftline import hints
from driftline.stack.configs import (
    LOCAL_STACK,
    STATE_FILE,
    Component,
    RenderedConfigs,
    StackConfig,
    StackError,
    command_line,
    default_state_dir,
    environment,
    find_binary,
    is_ours,
    ready_url,
    render,
)


@dataclass(frozen=True)
class ComponentStatus:
    """One component as `driftline stack status` reports it."""

    name: Component
    url: str
    pid: int | None
    is_running: bool
    is_ready: bool
    log_path: Path


def up(
    config: StackConfig | None = None, *, timeout_seconds: float = 60.0
) -> list[ComponentStatus]:
    """Start the components that are not running yet, wait until all are ready."""
    config = config or StackConfig.local()
    # Absolute, because ownership of a pid is recognised by the state dir in its argv.
    config = replace(config, state_dir=config.state_dir.resolve())
    for component in config.components:
        find_binary(component)
    rendered = render(config)
    _write_state(config)
    started: dict[Component, int] = {}
    try:
        for component in config.components:
            if _owned_pid(config.state_dir, component) is not None:
                continue
            started[component] = _start(component, config, rendered)
        # they start side by side: the Prefect server's 10-odd seconds overlap the others'
        deadline = time.monotonic() + timeout_seconds
        for component in config.components:
            _wait_ready(component, config, deadline, started.get(component))
    except BaseException:
        for component in reversed(list(started)):
            _stop(config.state_dir, component, timeout_seconds=5.0)
        raise
    return status(config.state_dir)


def down(state_dir: Path | None = None, *, timeout_seconds: float = 10.0) -> list[Component]:
    """Stop the components this state dir started; return the ones that were running."""
    state_dir = (state_dir or default_state_dir()).resolve()
    return [
        component
        for component in reversed(LOCAL_STACK)
        if _stop(state_dir, component, timeout_seconds=timeout_seconds)
    ]


def status(state_dir: Path | None = None) -> list[ComponentStatus]:
    """Report each component: its URL, pid, whether it runs and answers its readiness URL."""
    state_dir = (state_dir or default_state_dir()).resolve()
    urls = _read_state(state_dir) or {c: StackConfig.local().url(c) for c in LOCAL_STACK}
    statuses = []
    for component in LOCAL_STACK:
        if component not in urls:
            continue  # not part of the stack this state dir started
        pid = _owned_pid(state_dir, component)
        url = urls[component]
        statuses.append(
            ComponentStatus(
                name=component,
                url=url,
                pid=pid,
                is_running=pid is not None,
                is_ready=pid is not None and _is_ready(component, url),
                log_path=state_dir / f"{component}.log",
            )
        )
    return statuses


def format_status(statuses: list[ComponentStatus]) -> str:
    """Render statuses as the lines `driftline stack status` prints."""
    lines = []
    for s in statuses:
        state = "ready" if s.is_ready else "running, not ready" if s.is_running else "stopped"
        pid = f"pid {s.pid}" if s.pid is not None else "no pid"
        lines.append(f"{s.name:<13} {state:<19} {s.url:<24} {pid:<10} log {s.log_path}")
    return "\n".join(lines)


def _start(component: Component, config: StackConfig, rendered: RenderedConfigs) -> int:
    port = config.port(component)
    if component != "runner" and not _port_is_free(port):
        raise StackError(
            f"127.0.0.1:{port} is already in use, so the local {component} cannot listen there; "
            f"stop whatever holds it or choose another port"
        )
    argv = command_line(component, config, rendered)
    log_path = config.state_dir / f"{component}.log"
    with log_path.open("ab") as log:
        # A new session: the stack outlives the shell (and Ctrl-C) that started it.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=config.state_dir,
            env=environment(component, config),
            start_new_session=True,
        )
    (config.state_dir / f"{component}.pid").write_text(f"{process.pid}\n", encoding="utf-8")
    return process.pid


def _wait_ready(
    component: Component, config: StackConfig, deadline: float, started_pid: int | None
) -> None:
    """Until the component answers; a process started just now is followed by its own pid
    (its /proc entry may still show the starting program's argv for a moment)."""
    url = config.url(component)
    while True:
        if _is_ready(component, url):
            return
        alive = (
            processes.is_alive(started_pid)
            if started_pid is not None
            else _owned_pid(config.state_dir, component) is not None
        )
        if not alive:
            raise StackError(
                f"{component} exited before it was ready; last log lines of "
                f"{config.state_dir / (component + '.log')}:\n"
                + _tail(config.state_dir / f"{component}.log")
            )
        if time.monotonic() > deadline:
            raise StackError(f"{component} did not answer {ready_url(component, url)} in time")
        time.sleep(0.2)


def _stop(state_dir: Path, component: Component, *, timeout_seconds: float) -> bool:
    pid = _owned_pid(state_dir, component)
    pid_file = state_dir / f"{component}.pid"
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while processes.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if processes.is_alive(pid):
        _signal(pid, signal.SIGKILL)
        while processes.is_alive(pid):
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


def _owned_pid(state_dir: Path, component: Component) -> int | None:
    """Return the pid from the pid file if that process is alive and is the one we started."""
    try:
        pid = int((state_dir / f"{component}.pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    if not processes.is_alive(pid):
        return None
    command = processes.argv(pid)
    if command is not None and not is_ours(component, command, processes.environ(pid), state_dir):
        return None
    return pid


def _signal(pid: int, signum: int) -> None:
    """Signal the process and what it started: each component leads its own session."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _is_ready(component: Component, url: str) -> bool:
    if component == "runner":
        from driftline import runner

        return runner.ping(Path(url.removeprefix("unix:"))) is not None
    try:
        with urllib.request.urlopen(ready_url(component, url), timeout=1.0) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        # A Pushgateway behind basic auth guards /-/ready too: answering 401 means it is up.
        return error.code == 401
    except (urllib.error.URLError, OSError):
        return False


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_state(config: StackConfig) -> None:
    state = {component: config.url(component) for component in config.components}
    (config.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")


def _read_state(state_dir: Path) -> dict[str, str]:
    try:
        loaded = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(v, str)}


def main(action: Literal["up", "down", "status"], *, config: StackConfig | None = None) -> int:
    """Run `driftline stack up|down|status`: print the report, return the exit status."""
    config = config or StackConfig.local()
    try:
        if action == "up":
            print(format_status(up(config)))
            print(
                f"state, configs and logs in {config.state_dir}; "
                f"stop with: {hints.command('stack down')}"
            )
        elif action == "down":
            stopped = down(config.state_dir)
            print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
        else:
            print(format_status(status(config.state_dir)))
    except StackError as error:
        print(f"driftline stack {action}: {error}", file=sys.stderr)
        return 1
    return 0


def prefect_api_url(state_dir: Path | None = None) -> str | None:
    """The API of the stack's Prefect server when it is up and answers, else None."""
    state_dir = (state_dir or default_state_dir()).resolve()
    url = _read_state(state_dir).get("prefect")
    if url is None or _owned_pid(state_dir, "prefect") is None:
        return None
    return f"{url}/api" if _is_ready("prefect", url) else None

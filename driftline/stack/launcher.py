"""Programs started and stopped by pid, for the tests and the scripts: one launcher.

- `free_port()`: a loopback port nobody listens on right now (`driftline.stack.ports`).
- `wait_for(probe, ...)`: poll until the probe returns something truthy, fail naming what was
  awaited.
- `Process` / `launched(...)`: start a program in a process group (session) of its own, its output
  in files, and stop it by its pid: SIGTERM to the group, SIGKILL to the group if it does not go.
  `launched` is the context manager that always stops what it started.
- `pushgateway(...)`: a Pushgateway that always has a persistence file of its own (Debian's
  default file is shared by every run on the machine).
- `prometheus(...)`: a Prometheus on a free loopback port, ready when the context is entered.
- `run(argv, ...)`: run a program to its end, its group killed if it overruns.

Every process listens on 127.0.0.1 only: the launchers here pass the listen address themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from driftline.stack.ports import free_port

T = TypeVar("T")

PUSHGATEWAY = "prometheus-pushgateway"
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
# Debian's default: one file for every Pushgateway on the machine that is not told otherwise.
SHARED_PUSHGATEWAY_FILE = "/var/lib/prometheus/pushgateway.data"


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval: float = 0.5,
    tolerating: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `probe` until it returns something truthy and return that; fail naming `what`.

    Exceptions of the `tolerating` types count as "not yet" (e.g. OSError while a server starts);
    the last one is named if time runs out. Any other exception fails at once.
    """
    deadline = time.monotonic() + timeout_seconds
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except tolerating as error:
            result, last_error = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            why = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}{why}")
        time.sleep(interval)


class MissingProgram(RuntimeError):
    """A program the launcher needs is not on PATH."""


def binary(name: str) -> str:
    """Return the path of a program on PATH; raise MissingProgram naming the package if absent."""
    found = shutil.which(name)
    if found is None:
        raise MissingProgram(
            f"{name} not found on PATH; install it (Debian: apt-get install {name})"
        )
    return found


# Called with every argv before it starts (the tests refuse a server in a test not marked e2e).
launch_guard: Callable[[Sequence[str]], None] | None = None


def is_server(argv: Sequence[str]) -> bool:
    """Whether `argv` starts one of the stack's servers (or a Prefect server)."""
    prefect_server = any(list(argv[i : i + 2]) == ["server", "start"] for i in range(len(argv)))
    return Path(argv[0]).name in {PROMETHEUS, PUSHGATEWAY, ALERTMANAGER} or prefect_server


def _check_argv(argv: Sequence[str]) -> None:
    """Refuse a Pushgateway without a persistence file of its own (and what `launch_guard`
    refuses)."""
    if launch_guard is not None:
        launch_guard(argv)
    if Path(argv[0]).name != PUSHGATEWAY:
        return
    files = [a.split("=", 1)[1] for a in argv if a.startswith("--persistence.file=")]
    if len(files) != 1 or files[0] == SHARED_PUSHGATEWAY_FILE:
        raise ValueError(
            f"a Pushgateway started here needs --persistence.file=<a file of its own> or "
            f"--persistence.file= (empty); {SHARED_PUSHGATEWAY_FILE} is shared: {list(argv)}"
        )


@dataclass
class Process:
    """A program started in a session of its own, so its whole group can be stopped."""

    argv: list[str]
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        out: Path,
        err: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        """Start `argv`, stdout to `out`, stderr to `err` (or `out` too)."""
        _check_argv(argv)
        err = err or out
        return cls(list(argv), _popen(argv, out, err, env, cwd), out, err, env, cwd)

    def start_again(self) -> None:
        """Start the same program again after it stopped (its output appended to the same files)."""
        assert not self.running(), f"{self.argv[0]} (pid {self.pid}) is still running"
        self.popen = _popen(self.argv, self.out, self.err, self.env, self.cwd)

    def restart(self) -> None:
        """Stop the program by its pid and start it again."""
        self.stop()
        self.start_again()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        text = self.stdout() if self.err == self.out else self.stdout() + self.stderr()
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group's id is the leader's pid; it exists while any member lives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_seconds: float = 30.0) -> int:
        """SIGTERM the group (the program persists and exits), SIGKILL it if it will not go."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=timeout_seconds)
        self._signal_group(signal.SIGKILL)  # whatever it started and left behind
        return self.popen.returncode

    def kill(self) -> int:
        """SIGKILL the group: no handler, no `finally` runs."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=60)
        self._signal_group(signal.SIGKILL)  # a child that outlived its parent for a moment
        return self.popen.returncode

    def wait(self, timeout_seconds: float) -> int:
        return self.popen.wait(timeout=timeout_seconds)

    def wait_listening(self, port: int, *, timeout_seconds: float = 60.0) -> None:
        """Wait until something accepts on 127.0.0.1:`port`; fail at once if the process exits."""

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        self._wait_while_running(listening, f"it listened on 127.0.0.1:{port}", timeout_seconds)

    def wait_ready(self, url: str, *, timeout_seconds: float = 60.0) -> None:
        """Wait until `url` answers 200; fail at once if the process exits."""

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:  # URLError and HTTPError included
                return False

        self._wait_while_running(ready, f"{url} answered", timeout_seconds)

    def _wait_while_running(
        self, probe: Callable[[], bool], what: str, timeout_seconds: float
    ) -> None:
        def check() -> bool:
            if not self.running():
                raise AssertionError(
                    f"{self.argv[0]} exited {self.popen.returncode} before {what}:\n"
                    f"{self.log_tail()}"
                )
            return probe()

        wait_for(check, timeout_seconds=timeout_seconds, what=f"{self.argv[0]}: {what}",
                 interval=0.2)  # fmt: skip


def _popen(
    argv: Sequence[str],
    out: Path,
    err: Path,
    env: Mapping[str, str] | None,
    cwd: Path | None,
) -> subprocess.Popen[bytes]:
    with out.open("ab") as stdout, err.open("ab") as stderr:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stdout if err == out else stderr,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,  # a group of its own: its children are stopped with it
        )


@contextlib.contextmanager
def launched(
    argv: Sequence[str],
    *,
    out: Path,
    err: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Process]:
    """Start `argv` (see `Process.start`) and stop it by its pid when the block ends."""
    process = Process.start(argv, out=out, err=err, env=env, cwd=cwd)
    try:
        yield process
    finally:
        process.stop()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_seconds: float,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to its end in a session of its own, output captured as text.

    On timeout its whole group is killed (a CLI's ephemeral Prefect server with it) and an
    AssertionError says what the program had written so far.
    """
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    ) as popen:
        try:
            stdout, stderr = popen.communicate(input, timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            stdout, stderr = popen.communicate()
            raise AssertionError(
                f"{' '.join(argv)} did not finish in {timeout_seconds:.0f} s\n"
                f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)  # anything it left running in its group
    return subprocess.CompletedProcess(list(argv), popen.returncode, stdout, stderr)


@dataclass(frozen=True)
class Server:
    """A launched server, where it listens and how to tell it is ready."""

    process: Process
    port: int
    ready_path: str | None = "/-/ready"  # None: a listening socket is the signal

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout_seconds: float = 60.0) -> None:
        if self.ready_path is None:
            self.process.wait_listening(self.port, timeout_seconds=timeout_seconds)
        else:
            self.process.wait_ready(self.url + self.ready_path, timeout_seconds=timeout_seconds)

    def stop(self) -> None:
        """Stop it by its pid (SIGTERM: a Pushgateway writes its persistence file on the way)."""
        self.process.stop()

    def start_again(self) -> None:
        """Start it again on the same port with the same files, and wait until it is ready."""
        self.process.start_again()
        self.wait_ready()

    def restart(self) -> None:
        self.stop()
        self.start_again()


@contextlib.contextmanager
def serving(
    argv: Sequence[str],
    port: int,
    *,
    out: Path,
    ready_path: str | None = "/-/ready",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Launch a server listening on 127.0.0.1:`port`, wait until it is ready, stop it at the end."""
    with launched(argv, out=out, env=env, cwd=cwd) as process:
        server = Server(process, port, ready_path)
        server.wait_ready()
        yield server


def pushgateway_argv(
    directory: Path, port: int, *, web_config: Path | None = None, persistence: bool = True
) -> list[str]:
    """The Pushgateway's argv: loopback, its persistence file in `directory` (or none at all)."""
    store = directory / "pushgateway.db" if persistence else ""
    argv = [
        binary(PUSHGATEWAY),
        f"--persistence.file={store}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if web_config is not None:
        argv.append(f"--web.config.file={web_config}")
    return argv


@contextlib.contextmanager
def pushgateway(directory: Path, *, web_config: Path | None = None) -> Iterator[Server]:
    """A Pushgateway on a free loopback port, persisting to a file in `directory`; listening."""
    port = free_port()
    argv = pushgateway_argv(directory, port, web_config=web_config)
    # /-/ready is guarded by basic auth and TLS too: a listening socket is the signal
    with serving(argv, port, out=directory / "pushgateway.log", ready_path=None) as server:
        yield server


@contextlib.contextmanager
def prometheus(config: Path, data: Path, *flags: str) -> Iterator[Server]:
    """A Prometheus on a free loopback port with this config and data dir; ready."""
    port = free_port()
    argv = [
        binary(PROMETHEUS),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        *flags,
    ]
    with serving(argv, port, out=config.parent / "prometheus.log") as server:
        yield server

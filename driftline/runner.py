"""The stack's warm runner: `driftline monitor` and `backfill` in a process that has already
imported Prefect, scipy, scikit-learn, pandas and matplotlib.

Those imports are most of a nightly run's cost from the terminal (about 4 of its 5 CPU seconds;
the statistics take milliseconds). `driftline stack up` starts this runner beside the Prefect
server: it imports everything once, then listens on a Unix socket in the stack's state dir
(mode 0600, and only the same user's processes are served). For each command it forks a child,
which takes over the caller's terminal (stdin, stdout and stderr are passed over the socket),
working directory, umask and environment, runs `driftline.cli.main` with the caller's
arguments and reports the exit status, which the caller exits with. The caller forwards
Ctrl-C and termination signals to the child. Mercurial's chg serves its commands the same way.

The caller runs the command itself, as before, whenever the runner is not there or declines:
the code or the installed packages changed since it started (it then restarts itself, so the
next command is served by the new code), or the caller's Python or its environment differs in
what is read at import time (PYTHON*, PREFECT_LOGGING_*). `DRIFTLINE_RUNNER=off` turns it off.
The runner logs each command it served, with its exit status and seconds, to runner.log.

    python -m driftline.runner --socket PATH    (what `driftline stack up` runs)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import sysconfig
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from core.settings import REPO_ROOT, prefect_environment

SOCKET_NAME = "runner.sock"
# the commands a runner serves: the ones that import the heavy libraries to run a flow
COMMANDS = frozenset({"monitor", "backfill"})
# read once, when the interpreter or Prefect's logging starts: a caller that sets them otherwise
# runs the command itself
IMPORT_TIME_PREFIXES = ("PYTHON", "PREFECT_LOGGING_")
IMPORT_TIME_EXEMPT = frozenset({"PYTHONDONTWRITEBYTECODE"})
# what a monitor or backfill run imports, found by listing sys.modules after a run: every module
# a run would import itself costs it that import (flows.* bring Prefect and the tasks)
PRELOAD = (
    "driftline.cli",
    "driftline.stack",
    "flows.monitor",
    "flows.backfill",
    "tasks.backfill_report",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "fastapi",
    "starlette.staticfiles",
    "opentelemetry.metrics",
    "opentelemetry._logs",
    "http.cookies",
    "encodings.idna",
    "pydantic.color",
    "rich._emoji_codes",
    "scipy.stats",
    "scipy.special",
    "sklearn.ensemble",
    "pandas",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "PIL.features",
    "matplotlib.backends.backend_svg",
)
_MAX_MESSAGE = 1 << 20
_ANSWER_SECONDS = 30.0


class RunnerRefused(Exception):
    """The runner declined a command; the caller runs it itself."""


class CodeChanged(RunnerRefused):
    """The runner's imports are older than the code on disk: it restarts itself."""


# --- the caller's side: cheap, standard library only ----------------------------------------------


def socket_path(state_dir: Path) -> Path:
    """Where the runner of a stack listens."""
    return state_dir / SOCKET_NAME


def call(argv: Sequence[str], path: Path, env: Mapping[str, str] | None = None) -> int | None:
    """Run `driftline ARGV` in the runner at `path`: its exit status, or None when no runner
    answers or it declines (the caller then runs the command itself)."""
    env = os.environ if env is None else env
    if env.get("DRIFTLINE_RUNNER", "").lower() in {"off", "0", "no", "false"}:
        return None
    child = _Forwarder()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock, child:
        # a runner answers in milliseconds; one that does not within this is wedged
        sock.settimeout(_ANSWER_SECONDS)
        try:
            with _address(path) as address:
                sock.connect(address)
            reply = _request(sock, _request_of(argv, env))
        except (OSError, ValueError):
            reply = {}  # no runner, or one that went away before it took the command
        if "pid" not in reply:
            return 128 + child.received[0] if child.received else None
        child.found(int(reply["pid"]))
        sock.settimeout(None)  # the command takes as long as it takes
        try:
            reply = _receive(sock)
        except (OSError, ValueError):
            reply = {}
    if "exit" in reply:
        return int(reply["exit"])
    if child.received:  # it was told to stop, and it did
        return 128 + child.received[-1]
    print(
        f"driftline: error: the stack's runner process {child.pid} ended without an exit "
        f"status (killed?); its log is runner.log in the stack's state dir",
        file=sys.stderr,
    )
    return 1


class _Forwarder:
    """While a command runs in the runner, the signals meant for it (Ctrl-C, termination, a
    closed terminal) go on to its process; those that come before its pid is known wait."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self) -> None:
        self.pid: int | None = None
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Forwarder:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def found(self, pid: int) -> None:
        self.pid = pid
        for signum in self.received:
            self._kill(signum)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.pid is not None:
            self._kill(signum)

    def _kill(self, signum: int) -> None:
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """The socket's address: its path, or when that is longer than a Unix socket address may be
    (108 bytes), the same file reached through an open descriptor of its directory."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def _request_of(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    umask = os.umask(0)
    os.umask(umask)
    return {
        "argv": list(argv),
        "argv0": sys.argv[0],
        "env": dict(env),
        "cwd": os.getcwd(),
        "umask": umask,
        "prefix": sys.prefix,
    }


def _request(sock: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
    """Send the request with this process's stdin, stdout and stderr; return the first reply."""
    streams, opened = [], []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            streams.append(fd)
        except OSError:  # a closed stream stays closed for the command: /dev/null
            opened.append(os.open(os.devnull, os.O_RDWR))
            streams.append(opened[-1])
    try:
        socket.send_fds(sock, [json.dumps(request).encode()], streams)
    finally:
        for fd in opened:
            os.close(fd)
    return _receive(sock)


def _receive(sock: socket.socket) -> dict[str, Any]:
    message = sock.recv(_MAX_MESSAGE)
    if not message:
        return {}
    loaded = json.loads(message)
    return loaded if isinstance(loaded, dict) else {}


def ping(path: Path, timeout_seconds: float = 1.0) -> int | None:
    """The runner's pid when it answers at `path`, else None."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(timeout_seconds)
        try:
            with _address(path) as address:
                sock.connect(address)
            sock.send(json.dumps({"ping": True}).encode())
            reply = _receive(sock)
        except (OSError, ValueError):
            return None
    return int(reply["pong"]) if "pong" in reply else None


# --- the runner's side ---------------------------------------------------------------------------


def serve(path: Path) -> None:
    """Import everything a run needs, then serve commands at `path` until SIGTERM."""
    started = time.perf_counter()
    prefect_environment()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from tasks import plots

    plots._import_figure()
    fingerprint = _fingerprint()
    environment = dict(os.environ)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    signal.signal(signal.SIGTERM, _leave)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    umask = os.umask(0o177)  # the socket: its owner only
    try:
        with _address(path) as address:
            listener.bind(address)
    finally:
        os.umask(umask)
    listener.listen(16)
    _log(f"ready at {path} in {time.perf_counter() - started:.1f} s, pid {os.getpid()}")
    while True:
        connection, _ = listener.accept()
        with connection:
            try:
                _serve_one(listener, connection, fingerprint, environment)
            except Exception as error:  # one bad request never takes the runner down
                _log(f"a request failed: {type(error).__name__}: {error}")


def _serve_one(
    listener: socket.socket,
    connection: socket.socket,
    fingerprint: dict[str, int],
    environment: Mapping[str, str],
) -> None:
    connection.settimeout(5.0)
    # close-on-exec: a runner that restarts must not keep the caller's terminal or pipes open
    message, fds, _, _ = socket.recv_fds(connection, _MAX_MESSAGE, 3, socket.MSG_CMSG_CLOEXEC)
    restart = False
    try:
        request = json.loads(message)
        if request.get("ping"):
            connection.send(json.dumps({"pong": os.getpid()}).encode())
            return
        try:
            _check(connection, request, fingerprint, environment)
        except RunnerRefused as refused:
            _log(f"declined {' '.join(request.get('argv', []))}: {refused}")
            connection.send(json.dumps({"refused": str(refused)}).encode())
            restart = isinstance(refused, CodeChanged)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            _child(listener, connection, fds, request)  # never returns
    finally:
        for fd in fds:
            os.close(fd)
        if restart:
            _restart()


def _check(
    connection: socket.socket,
    request: dict[str, Any],
    fingerprint: dict[str, int],
    environment: Mapping[str, str],
) -> None:
    """Raise RunnerRefused unless the child would run the command exactly as the caller would."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    _, uid, _ = struct.unpack("3i", credentials)
    if uid != os.getuid():
        raise RunnerRefused(f"the caller runs as uid {uid}, the runner as {os.getuid()}")
    if request.get("prefix") != sys.prefix:
        raise RunnerRefused(f"the caller's Python is {request.get('prefix')}, not {sys.prefix}")
    if not os.path.isdir(str(request.get("cwd"))):
        raise RunnerRefused(f"the caller's directory {request.get('cwd')} is not there")
    env = dict(request["env"])
    prefect_environment(env)
    differs = sorted(
        key
        for key in set(env) | set(environment)
        if key.startswith(IMPORT_TIME_PREFIXES)
        and key not in IMPORT_TIME_EXEMPT
        and env.get(key) != environment.get(key)
    )
    if differs:
        raise RunnerRefused(f"the caller sets {', '.join(differs)} otherwise")
    changed = [path for path, mtime in fingerprint.items() if _mtime(path) != mtime]
    if changed:
        raise CodeChanged(f"{changed[0]} changed since the runner started; restarting")


def _child(
    listener: socket.socket, connection: socket.socket, fds: list[int], request: dict[str, Any]
) -> None:
    """The command in the caller's place; reports its exit status, then leaves."""
    started = time.perf_counter()
    log = os.fdopen(os.dup(2), "w")  # the runner's log: fd 2 becomes the caller's stderr
    argv = [str(a) for a in request["argv"]]
    code = 1
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())  # type: ignore[union-attr]
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [str(request["argv0"]), *argv]
        connection.settimeout(None)
        connection.send(json.dumps({"pid": os.getpid()}).encode())
        from driftline import cli

        code = cli.main(argv)
        cli.finish()
    except KeyboardInterrupt:  # Ctrl-C before or after `main`, which tells it as 130 too
        code = 130
    except BaseException as error:  # nothing may climb back into the runner's loop
        with contextlib.suppress(BaseException):
            _log(f"pid {os.getpid()}: {type(error).__name__}: {error}", log)
    finally:
        with contextlib.suppress(BaseException):
            _log(f"pid {os.getpid()}: driftline {' '.join(argv)}: exit {code} in "
                 f"{time.perf_counter() - started:.2f} s", log)  # fmt: skip
            connection.send(json.dumps({"exit": code}).encode())
        os._exit(code)


def _fingerprint() -> dict[str, int]:
    """The modification times of the project's imported modules and of the installed packages'
    directories: any change means the runner's imports are not what a new process would load."""
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    paths = {
        file
        for file in files
        if isinstance(file, str)
        and Path(file).is_relative_to(REPO_ROOT)
        and not Path(file).is_relative_to(sys.prefix)
    }
    paths.update(sysconfig.get_paths()[kind] for kind in ("purelib", "platlib"))
    return {path: _mtime(path) for path in sorted(paths)}


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _restart() -> None:
    """The same runner, pid and argv, with the code as it is now."""
    _log("restarting: the code changed")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _leave(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _log(line: str, stream: TextIO | None = None) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", file=stream or sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftline.runner", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to serve at")
    args = parser.parse_args(argv)
    try:
        serve(args.socket)
    finally:
        with contextlib.suppress(OSError):
            if args.socket.exists():
                args.socket.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stack's warm runner: `driftline monitor` and `backfill` in a process that has already
imported everything a run needs (the caller's side: `driftline.runner`).

`driftline stack up` starts it beside the Prefect server: it imports Prefect, the flows, scipy,
scikit-learn, pandas and matplotlib once, then listens on a Unix socket in the stack's state dir
(mode 0600; it serves only processes of its own user). For each command it forks a child, which
takes over the caller's stdin, stdout and stderr (passed over the socket), working directory,
umask and environment, runs `driftline.cli.main` with the caller's arguments and reports the exit
status. The runner itself runs nothing, and one bad request never stops it.

It declines a command, and the caller runs it itself, when the code or the installed packages
changed since it started (it then restarts itself, same pid and argv, so the next command is
served by the new code), or when the caller's Python or its environment differs in what is read
at import time (PYTHON*, PREFECT_LOGGING_*). It logs each command it ran, with its exit status
and seconds, and each it declined, with why, to stderr (runner.log in the stack's state dir).

    python -m driftline.stack.runner --socket PATH    (what `driftline stack up` runs)
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from core.settings import REPO_ROOT, prefect_environment
from driftline import exits
from driftline.runner import MAX_MESSAGE, address

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
    "tasks.reports.backfill",
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


# the process's last exit handler (driftline.exits); a child sets what it reports
_LEAVE = exits.LastExit()


class RunnerRefused(Exception):
    """The runner declined a command; the caller runs it itself."""


class CodeChanged(RunnerRefused):
    """The runner's imports are older than the code on disk: it restarts itself."""


def serve(path: Path) -> None:
    """Import everything a run needs, then serve commands at `path` until SIGTERM."""
    started = time.perf_counter()
    prefect_environment()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from tasks.reports import plots

    plots._import_figure()
    fingerprint = _fingerprint()
    environment = dict(os.environ)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    signal.signal(signal.SIGTERM, _leave)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    umask = os.umask(0o177)  # the socket: its owner only
    try:
        with address(path) as where:
            listener.bind(where)
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
    message, fds, _, _ = socket.recv_fds(connection, MAX_MESSAGE, 3, socket.MSG_CMSG_CLOEXEC)
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
    """The command in the caller's place; reports its exit status as it leaves."""
    started = time.perf_counter()
    log = os.fdopen(os.dup(2), "w")  # the runner's log: fd 2 becomes the caller's stderr
    argv = [str(a) for a in request["argv"]]
    code = 1
    interrupted = False
    try:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # the originals are closed as the request ends
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
    except KeyboardInterrupt:  # Ctrl-C before or after `main`, which tells it as 130 too
        code = 130
    except BaseException as error:  # nothing may climb back into the runner's loop
        interrupted = True
        with contextlib.suppress(BaseException):
            _log(f"pid {os.getpid()}: {type(error).__name__}: {error}", log)

    def report() -> None:
        with contextlib.suppress(BaseException):
            _log(f"pid {os.getpid()}: driftline {' '.join(argv)}: exit {code} in "
                 f"{time.perf_counter() - started:.2f} s", log)  # fmt: skip
            reply.send(json.dumps({"exit": code}).encode())

    reply = socket.socket(fileno=os.dup(connection.fileno()))
    if code == 130 or interrupted:  # a run stopped midway: its threads are not waited for
        report()
        os._exit(code)
    # Python's own exit from here: the threads joined and Prefect's exit handlers run (its
    # workers drain), then the last handler reports the exit status and ends the child
    _LEAVE.code, _LEAVE.before = code, report
    raise SystemExit(code)  # past the runner's loop, which catches Exception only


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
    global _LEAVE
    _LEAVE = exits.leave_last()  # before the imports: its handler runs after theirs
    runner = os.getpid()
    parser = argparse.ArgumentParser(prog="python -m driftline.stack.runner", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to serve at")
    args = parser.parse_args(argv)
    try:
        serve(args.socket)
    finally:
        with contextlib.suppress(OSError):
            if os.getpid() == runner and args.socket.exists():  # not a child leaving
                args.socket.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

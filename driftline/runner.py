"""The stack's warm runner, as a command sees it: `driftline monitor` and `backfill` handed to a
process that has already imported Prefect, scipy, scikit-learn, pandas and matplotlib.

Those imports are most of a nightly run's cost from the terminal (about 4 of its 5 CPU seconds;
the statistics take milliseconds). The runner (`driftline.stack.runner`, started by `driftline
stack up`) listens on a Unix socket in the stack's state dir. `call` sends it the command's
arguments, environment, working directory and umask, with its stdin, stdout and stderr; the
runner forks a child that runs the command in the caller's place and reports its exit status,
which the caller exits with. Ctrl-C and termination signals go on to that child. Mercurial's chg
serves its commands the same way.

The caller runs the command itself, as before, whenever no runner answers or it declines (see
`driftline.stack.runner`), and with `DRIFTLINE_RUNNER=off`. Standard library only: this is
imported by every `driftline monitor` before anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

SOCKET_NAME = "runner.sock"
# the commands a runner serves: the ones that import the heavy libraries to run a flow
COMMANDS = frozenset({"monitor", "backfill"})
MAX_MESSAGE = 1 << 20
_ANSWER_SECONDS = 30.0


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
            with address(path) as where:
                sock.connect(where)
            reply = _request(sock, _request_of(argv, env))
        except (OSError, ValueError):
            reply = {}  # no runner, or one that went away before it took the command
        if "pid" not in reply:
            return 128 + child.received[0] if child.received else None
        child.found(int(reply["pid"]))
        sock.settimeout(None)  # the command takes as long as it takes
        try:
            reply = receive(sock)
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
def address(path: Path) -> Iterator[str]:
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
    return receive(sock)


def receive(sock: socket.socket) -> dict[str, Any]:
    message = sock.recv(MAX_MESSAGE)
    if not message:
        return {}
    loaded = json.loads(message)
    return loaded if isinstance(loaded, dict) else {}


def ping(path: Path, timeout_seconds: float = 1.0) -> int | None:
    """The runner's pid when it answers at `path`, else None."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(timeout_seconds)
        try:
            with address(path) as where:
                sock.connect(where)
            sock.send(json.dumps({"ping": True}).encode())
            reply = receive(sock)
        except (OSError, ValueError):
            return None
    return int(reply["pong"]) if "pong" in reply else None


# --- the runner's side ---------------------------------------------------------------------------

"""The warm runner's decisions, without starting one: when the caller runs a command itself.

The runner serving commands for real (exit statuses, Ctrl-C, a restart after a code change) is
tested against the local stack in tests/test_local_stack.py.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from driftline import cli, runner
from driftline.stack import runner as server

ENV = {"PATH": "/usr/bin", "PYTHONHASHSEED": "0", "DATA_LAKE_URI": "/lake"}


def request(**changes: object) -> dict[str, object]:
    base = {"argv": ["monitor"], "argv0": "driftline", "env": dict(ENV), "cwd": os.getcwd(),
            "umask": 0o022, "prefix": sys.prefix}  # fmt: skip
    return {**base, **changes}


def check(req: dict[str, object], fingerprint: dict[str, int] | None = None) -> None:
    """`server._check` on a real Unix socket, whose peer is this process (same uid)."""
    environment = dict(ENV)
    server.prefect_environment(environment)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right:
        server._check(left, req, fingerprint or {}, environment)


def test_a_caller_like_the_runner_is_served() -> None:
    check(request())
    # what is not read at import time may differ: it is the command's own environment
    check(request(env={**ENV, "DATA_LAKE_URI": "/elsewhere", "PUSHGATEWAY_URL": "http://x"}))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"env": {**ENV, "PYTHONHASHSEED": "7"}}, "the caller sets PYTHONHASHSEED otherwise"),
        ({"env": {**ENV, "PREFECT_LOGGING_LEVEL": "DEBUG"}}, "PREFECT_LOGGING_LEVEL otherwise"),
        ({"prefix": "/usr"}, "the caller's Python is /usr"),
        ({"cwd": "/nonexistent/dir"}, "/nonexistent/dir is not there"),
    ],
)
def test_a_caller_that_would_run_differently_runs_the_command_itself(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(server.RunnerRefused, match=reason):
        check(request(**changes))


def test_changed_code_restarts_the_runner(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("x = 1\n")
    fingerprint = {str(module): module.stat().st_mtime_ns}
    check(request(), fingerprint)
    os.utime(module, ns=(0, module.stat().st_mtime_ns + 1))
    with pytest.raises(server.CodeChanged, match=f"{module} changed"):
        check(request(), fingerprint)


def test_the_fingerprint_covers_the_project_and_the_installed_packages() -> None:
    paths = server._fingerprint()
    assert str(Path(cli.__file__)) in paths
    assert any(Path(p).name == "site-packages" for p in paths)
    assert not any("site-packages" in Path(p).parts[:-1] for p in paths)  # no module in it


def test_no_runner_means_the_caller_runs_the_command(tmp_path: Path) -> None:
    assert runner.call(["monitor"], tmp_path / "runner.sock", ENV) is None
    assert runner.ping(tmp_path / "runner.sock") is None


def test_a_runner_turned_off_is_not_asked(tmp_path: Path) -> None:
    path = tmp_path / "runner.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(0.2)
        assert runner.call(["monitor"], path, {**ENV, "DRIFTLINE_RUNNER": "off"}) is None
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody knocked


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["monitor", "--help"],
        ["train"],
        ["stack", "up"],
        ["monitor", "--date", "yesterday"],  # a usage error is told by the caller itself
        [],
    ],
)
def test_only_runs_of_monitor_and_backfill_go_to_the_runner(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli._in_runner(argv) is None
    assert capsys.readouterr() == ("", "")


def test_a_socket_deep_in_the_file_system_is_reached(tmp_path: Path) -> None:
    """A state dir whose socket path is longer than a Unix socket address may be."""
    deep = tmp_path.joinpath(*["a-long-directory-name"] * 6)
    deep.mkdir(parents=True)
    path = deep / runner.SOCKET_NAME
    assert len(str(path)) > 108
    with (
        runner.address(path) as address,
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener,
    ):
        listener.bind(address)
        listener.listen(1)
        assert path.exists()
        with (
            runner.address(path) as address,
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as caller,
        ):
            caller.connect(address)

"""`free_port`: loopback ports for the servers the tests start, out of the way of the ports the
kernel gives outgoing connections (a server losing its port to one failed a CI run)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftline.stack import ports


def test_ports_lie_below_the_ephemeral_range_are_free_and_never_repeat() -> None:
    first_ephemeral = ports._ephemeral_start()
    given = [ports.free_port() for _ in range(60)]
    assert len(set(given)) == len(given)
    assert all(ports._LOWEST <= port < first_ephemeral for port in given)
    for port in given:  # nobody listens on them: each binds
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        candidates = [busy, ports.free_port()]
        ports._given.discard(candidates[1])  # handed out, but not yet: as new
        monkeypatch.setattr(ports._random, "sample", lambda population, k: list(candidates))
        assert ports.free_port() == candidates[1]


def test_without_room_below_the_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("10500\t60999\n")  # under 1,000 ports below it
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", narrow)
    given = {ports.free_port() for _ in range(20)}
    assert len(given) == 20 and all(port >= 1024 for port in given)

"""Loopback ports for the servers the tests and scripts start: `free_port()`.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from its ephemeral range, the
range it also takes the local end of every outgoing connection from. Between picking such a
port and the server binding it (seconds, while other servers start and are probed), a
connection can take it, and the server then fails with "address already in use". So ports are
picked below that range (Linux: /proc/sys/net/ipv4/ip_local_port_range), where the kernel
never puts a connection on its own, and each is checked free by binding it. A process is never
handed the same port twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below: ports many services are configured on
_given: set[int] = set()
_lock = threading.Lock()
_random = random.Random()  # its own: picking a port leaves the `random` module's state alone


def free_port() -> int:
    """A loopback port nobody listens on right now, outside the ephemeral range, and not
    handed out before by this process."""
    low, high = _LOWEST, _ephemeral_start() - 1
    with _lock:
        if high - low >= 1_000:
            for port in _random.sample(range(low, high + 1), 200):
                if port not in _given and _bindable(port):
                    _given.add(port)
                    return port
        while True:  # no room below the range (or nothing free there): the kernel's choice
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (IANA's 49152 where it is not told)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

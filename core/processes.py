"""What /proc says about a process: whether it still runs, and which process a pid now names."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, even our own unreaped child, counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own exited child, or it lingers as a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    with contextlib.suppress(OSError):
        return _stat_fields(pid)[0] not in {"Z", "X"}
    return True


def start_time(pid: int) -> str | None:
    """When `pid` started (/proc/<pid>/stat field 22): tells a recycled pid apart."""
    try:
        return _stat_fields(pid)[19]
    except OSError:
        return None


def argv(pid: int) -> list[str] | None:
    """The command line `pid` runs, or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def environ(pid: int) -> dict[str, str] | None:
    """The environment `pid` started with, or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return dict(pairs)  # type: ignore[arg-type]

"""One writer per model and batch day: a lock file in the lake, created exclusively.

The lock file holds its owner (host, pid, the pid's start time, when, what for, a random token).
A lock whose owner is gone is taken over: on the same host when its pid no longer runs (or runs a
different process than the one that took it), from any host when it is older than
`stale_after_seconds`.

On a local or POSIX network filesystem the file is created with `link(2)`, which fails if the
name exists, so exactly one process wins and the file appears with its whole content. Object
stores (S3, GCS through pyarrow) offer no create-if-absent through pyarrow, so there the lock is
best effort: check, write, read back and compare the token; two runs starting within the same
moment can both pass. docs/reliability.md lists what that means.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

from core import processes
from core.errors import RunError
from core.settings import LockPolicy
from data_lake.storage import Storage


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    pid_started: str | None  # /proc/<pid>/stat field 22: tells a recycled pid apart
    acquired_at: float
    purpose: str
    token: str

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.acquired_at, UTC).isoformat(timespec="seconds")
        return f"{self.purpose} (pid {self.pid} on {self.host}, since {when})"

    @classmethod
    def me(cls, purpose: str) -> LockOwner:
        pid = os.getpid()
        return cls(
            socket.gethostname(),
            pid,
            processes.start_time(pid),
            time.time(),
            purpose,
            uuid.uuid4().hex,
        )


def _is_running(pid: int, started: str | None) -> bool:
    """The lock's owner still runs: its pid is alive and started when the lock was taken."""
    if not processes.is_alive(pid):
        return False
    now = processes.start_time(pid)
    return started is None or now is None or now == started


def _parse(raw: bytes | None) -> LockOwner | None:
    if raw is None:
        return None
    try:
        return LockOwner(**json.loads(raw))
    except (ValueError, TypeError):
        return None


@dataclass
class LakeLock:
    """A held lock; `release` removes the file only while it is still ours."""

    storage: Storage
    path: str
    owner: LockOwner

    def is_held(self) -> bool:
        current = _parse(self.storage.read_bytes(self.path))
        return current is not None and current.token == self.owner.token

    def release(self) -> None:
        if self.is_held():
            with contextlib.suppress(FileNotFoundError):
                self.storage.fs.delete_file(self.path)


def why_stale(owner: LockOwner | None, *, age_seconds: float, policy: LockPolicy) -> str | None:
    """Why a lock may be taken over, or None while its owner may still be working."""
    if owner is None:
        return "its content is unreadable"
    if owner.host == socket.gethostname() and not _is_running(owner.pid, owner.pid_started):
        return f"pid {owner.pid} is no longer running"
    if age_seconds > policy.stale_after_seconds:
        return f"it is older than {policy.stale_after_seconds:.0f} s"
    return None


def acquire(
    storage: Storage,
    path: str,
    *,
    purpose: str,
    policy: LockPolicy,
    on_wait: Callable[[LockOwner | None], None] | None = None,
    on_takeover: Callable[[LockOwner | None, str], None] | None = None,
) -> LakeLock:
    """Take the lock at `path`, waiting up to `policy.wait_seconds` for its holder."""
    me = LockOwner.me(purpose)
    deadline = time.monotonic() + policy.wait_seconds
    announced = False
    while True:
        if _create(storage, path, me):
            return LakeLock(storage, path, me)
        info = storage.fs.get_file_info(path)
        holder = _parse(storage.read_bytes(path))
        if info.type == pafs.FileType.NotFound:
            continue  # released between our attempt and our look: try again at once
        age = time.time() - (holder.acquired_at if holder else _mtime(info))
        reason = why_stale(holder, age_seconds=age, policy=policy)
        if reason is not None:
            if _take_over(storage, path, holder) and on_takeover:
                on_takeover(holder, reason)
            continue
        if time.monotonic() >= deadline:
            held_by = holder.describe() if holder else "another run"
            raise RunError(
                f"{storage.uri_of(path)} is held by {held_by}: another run is writing the same "
                f"model and batch day; waited {policy.wait_seconds:.0f} s. Run again when it "
                "has finished, or delete the lock file if that process is gone"
            )
        if not announced and on_wait:
            on_wait(holder)
            announced = True
        time.sleep(policy.poll_seconds)


def _mtime(info: pafs.FileInfo) -> float:
    return info.mtime.timestamp() if info.mtime is not None else time.time()


def _create(storage: Storage, path: str, owner: LockOwner) -> bool:
    payload = (json.dumps(asdict(owner), sort_keys=True) + "\n").encode()
    parent = path.rsplit("/", 1)[0]
    storage.fs.create_dir(parent, recursive=True)
    if isinstance(storage.fs, pafs.LocalFileSystem):
        tmp = f"{parent}/.tmp-{owner.token}.lock"
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic and never replaces: the one primitive a lock needs
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    if storage.exists(path):
        return False
    storage.write_bytes(path, payload)
    current = _parse(storage.read_bytes(path))
    return current is not None and current.token == owner.token


def _take_over(storage: Storage, path: str, stale: LockOwner | None) -> bool:
    """Remove the stale lock, making sure it is the one judged stale and not a fresh one."""
    if not isinstance(storage.fs, pafs.LocalFileSystem):
        with contextlib.suppress(FileNotFoundError):
            storage.fs.delete_file(path)
        return True
    aside = f"{path}.stale-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # someone else took it over first
    moved = _parse(Path(aside).read_bytes())
    if stale is not None and (moved is None or moved.token != stale.token):
        # we moved a fresh lock taken in between: put it back unless yet another run holds one
        try:
            os.link(aside, path)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        os.unlink(aside)
        return False
    os.unlink(aside)
    return True

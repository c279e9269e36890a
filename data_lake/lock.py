"""One writer per model and batch day: a lock file in the lake, created exclusively.

The lock file holds its owner (host, pid, the pid's start time, when, what for, a random token).
A lock whose owner is gone is taken over: on the same host when its pid no longer runs (or runs a
different process than the one that took it), from any host when it is older than
`stale_after_seconds`.

Which mechanism makes "exclusively" true depends on where the lake is:

- a local or POSIX network filesystem: the file is created with `link(2)`, which fails if the
  name exists, so exactly one process wins and the file appears with its whole content; a stale
  lock is renamed aside and checked before it is removed;
- S3 (`s3://`): a conditional PUT, `If-None-Match: *`, which the store itself decides, so exactly
  one run wins across machines; a stale lock is replaced with `If-Match: <its ETag>`, so of two
  runs taking it over one wins; release deletes with `If-Match` too (data_lake/s3_lock.py);
- an S3-compatible store that does not honour those conditions, an s3:// lake without botocore,
  or another object store (GCS through pyarrow): best effort, with a warning: check, write, read
  back and compare the token; two runs starting within the same moment can both pass.

docs/reliability.md, "The lock, and its limits", says what each means.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
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
from data_lake.s3_lock import ConditionalStore, conditional_store
from data_lake.storage import Storage

log = logging.getLogger("driftline.lock")
_warned: set[str] = set()


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
    # on S3: the store that took it and the ETag it was written under
    store: ConditionalStore | None = None
    etag: str | None = None

    def is_held(self) -> bool:
        current = _parse(self.storage.read_bytes(self.path))
        return current is not None and current.token == self.owner.token

    def release(self) -> None:
        if self.store is not None and self.etag is not None:
            self.store.delete(self.path, self.etag)  # refused when another run took it over
            return
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
    store = _conditional_store(storage, path)
    deadline = time.monotonic() + policy.wait_seconds
    announced = False
    while True:
        if store is not None:
            held, holder = _attempt_conditional(store, storage, path, me, policy, on_takeover)
        else:
            held, holder = _attempt(storage, path, me, policy, on_takeover)
        if held is not None:
            return held
        if holder is _AGAIN:
            if store is not None:
                time.sleep(0.05)  # e.g. 409: another conditional write of the key in flight
            continue
        if time.monotonic() >= deadline:
            held_by = holder.describe() if isinstance(holder, LockOwner) else "another run"
            raise RunError(
                f"{storage.uri_of(path)} is held by {held_by}: another run is writing the same "
                f"model and batch day; waited {policy.wait_seconds:.0f} s. Run again when it "
                "has finished, or delete the lock file if that process is gone"
            )
        if not announced and on_wait:
            on_wait(holder if isinstance(holder, LockOwner) else None)
            announced = True
        time.sleep(policy.poll_seconds)


_AGAIN = object()  # the lock changed under us (released, taken over): look again at once
_Attempt = tuple[LakeLock | None, LockOwner | object | None]


def _conditional_store(storage: Storage, path: str) -> ConditionalStore | None:
    """S3's conditional writes when the store honours them; otherwise None, with a warning (once
    per process and reason) when the lake is an object store and so only best effort."""
    if isinstance(storage.fs, pafs.LocalFileSystem):
        return None
    store, why_not = conditional_store(storage, path.rsplit("/", 1)[0])
    if store is None:
        reason = why_not or (
            f"pyarrow's {storage.fs.type_name} filesystem offers no create-if-absent"
        )
        if reason not in _warned:
            _warned.add(reason)
            log.warning(
                "the lake's lock at %s is best effort: %s; two runs of the same model and day "
                "that start at the same moment can both write it (docs/reliability.md, "
                '"The lock, and its limits")',
                storage.uri_of(path.rsplit("/", 1)[0]),
                reason,
            )
    return store


def _attempt(
    storage: Storage,
    path: str,
    me: LockOwner,
    policy: LockPolicy,
    on_takeover: Callable[[LockOwner | None, str], None] | None,
) -> _Attempt:
    """One try on a filesystem (or best effort): the lock, or who holds it."""
    if _create(storage, path, me):
        return LakeLock(storage, path, me), None
    info = storage.fs.get_file_info(path)
    holder = _parse(storage.read_bytes(path))
    if info.type == pafs.FileType.NotFound:
        return None, _AGAIN  # released between our attempt and our look
    age = time.time() - (holder.acquired_at if holder else _mtime(info))
    reason = why_stale(holder, age_seconds=age, policy=policy)
    if reason is not None:
        if _take_over(storage, path, holder) and on_takeover:
            on_takeover(holder, reason)
        return None, _AGAIN
    return None, holder


def _attempt_conditional(
    store: ConditionalStore,
    storage: Storage,
    path: str,
    me: LockOwner,
    policy: LockPolicy,
    on_takeover: Callable[[LockOwner | None, str], None] | None,
) -> _Attempt:
    """One try with the store's conditional writes: the lock, or who holds it."""
    payload = _payload(me)
    etag = store.create(path, payload)
    if etag is not None:
        return LakeLock(storage, path, me, store, etag), None
    current = store.read(path)
    if current is None:
        return None, _AGAIN  # released between our attempt and our look
    holder = _parse(current.payload)
    if holder is not None and holder.token == me.token:
        # our own write, answered 412 on a retry after its first response was lost
        return LakeLock(storage, path, me, store, current.etag), None
    modified = current.modified.timestamp() if current.modified else time.time()
    age = time.time() - (holder.acquired_at if holder else modified)
    reason = why_stale(holder, age_seconds=age, policy=policy)
    if reason is None:
        return None, holder
    # replace exactly the lock judged stale: a run that got there first changed its ETag
    etag = store.replace(path, payload, current.etag)
    if etag is None:
        return None, _AGAIN
    if on_takeover:
        on_takeover(holder, reason)
    return LakeLock(storage, path, me, store, etag), None


def _payload(owner: LockOwner) -> bytes:
    return (json.dumps(asdict(owner), sort_keys=True) + "\n").encode()


def _mtime(info: pafs.FileInfo) -> float:
    return info.mtime.timestamp() if info.mtime is not None else time.time()


def _create(storage: Storage, path: str, owner: LockOwner) -> bool:
    payload = _payload(owner)
    parent = path.rsplit("/", 1)[0]
    storage.fs.create_dir(parent, recursive=True)
    if isinstance(storage.fs, pafs.LocalFileSystem):
        tmp = f"{parent}/.tmp-{owner.token}.lock"
        try:
            with open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)  # atomic and never replaces: the one primitive a lock needs
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # also when the write failed (a full disk)
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

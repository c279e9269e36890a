"""Local files written whole or not at all: the one atomic write every local writer uses.

The bytes go to a hidden temporary name beside the target (`.tmp-<random>-<name>`), are flushed
to disk, and the name is moved into place and the move flushed too, so a reader, a crash or a
power cut sees the old file or the new one, never half of one. A writer killed midway leaves only
its temporary file, which the next writer of that place removes (data_lake/storage.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.errors import RunError

TEMP_PREFIX = ".tmp-"
# a full filesystem, or the writer's quota used up: retrying cannot help until space is freed
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoSpaceError(RunError):
    """A write found its filesystem full: the target is unchanged, the temporary file removed."""


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` says the filesystem (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def free_space(path: Path) -> str:
    """`<free> free of <total> on <dir>` for the filesystem holding `path` (its nearest existing
    folder), for messages about a full disk."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return f"free space of {where} unknown: {exc.strerror or exc}"
    return f"{_size(usage.free)} free of {_size(usage.total)} on {where}"


def _size(n: float) -> str:
    unit = "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            break
        n, unit = n / 1024, larger
    return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"


def no_space_error(path: Path) -> NoSpaceError:
    """The one line for a write of `path` that found no space left."""
    kept = "the previous file is unchanged" if path.is_file() else "nothing was written"
    return NoSpaceError(
        f"no space left on the device to write {path} ({free_space(path.parent)}); {kept} and "
        "the temporary file was removed; free space on that filesystem (or move the data to a "
        "larger one), then run again"
    )


def temp_name(path: str) -> str:
    """The temporary name beside `path` that a write goes to before it is moved into place."""
    parent, name = path.rsplit("/", 1)
    return f"{parent}/{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


def write_atomically(
    path: Path,
    write: Callable[[BinaryIO], object],
    *,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Write `path` through `write(handle)`; `before_commit` runs once the bytes are on disk
    under the temporary name, before the move (the crash tests pause there)."""
    tmp = Path(temp_name(path.as_posix()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_no_space(exc):  # not retried: a full disk stays full until someone frees it
            raise no_space_error(path) from exc
        raise


def write_bytes_atomically(path: Path, payload: bytes) -> None:
    write_atomically(path, lambda handle: handle.write(payload))


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry is data too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

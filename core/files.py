"""Local files written whole or not at all: the one atomic write every local writer uses.

The bytes go to a hidden temporary name beside the target (`.tmp-<random>-<name>`), are flushed
to disk, and the name is moved into place and the move flushed too, so a reader, a crash or a
power cut sees the old file or the new one, never half of one. A writer killed midway leaves only
its temporary file, which the next writer of that place removes (data_lake/storage.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temp_name(path.as_posix()))
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
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

"""sha256 of local registry files, remembered by what the filesystem says of each file.

A hit needs the same path, size, inode, modification and change time. The change time (ctime)
moves on every write, rename or metadata change and cannot be set by a user, so a remembered
digest is the digest of the bytes still there. The cache lives outside the registry (settings:
DRIFTLINE_CACHE_DIR), where whoever can rewrite a registry file cannot also vouch for it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from core.files import write_bytes_atomically

MAX_ENTRIES = 10_000


class HashCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, list[object]] | None = None

    def get(self, file: Path) -> str | None:
        entry = self._load().get(str(file))
        if entry is None or entry[:-1] != _identity(file):
            return None
        digest = entry[-1]
        return digest if isinstance(digest, str) else None

    def put(self, file: Path, digest: str, identity: list[object]) -> None:
        """Remember `digest` for `file` as it was when hashing began (`identity`)."""
        entries = self._load()
        if not identity or identity != _identity(file):
            return  # the file changed while it was read: remember nothing
        entries[str(file)] = [*identity, digest]
        while len(entries) > MAX_ENTRIES:
            entries.pop(next(iter(entries)))
        # a read-only cache dir costs speed, not correctness
        with contextlib.suppress(OSError):
            write_bytes_atomically(self.path, json.dumps(entries).encode())

    def identity(self, file: Path) -> list[object]:
        return _identity(file)

    def _load(self) -> dict[str, list[object]]:
        if self._entries is None:
            try:
                loaded = json.loads(self.path.read_bytes())
            except (OSError, ValueError):
                loaded = {}
            self._entries = loaded if isinstance(loaded, dict) else {}
        return self._entries


def _identity(file: Path) -> list[object]:
    try:
        st = os.stat(file)
    except OSError:
        return []
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]

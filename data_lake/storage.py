"""Storage under one root on any pyarrow filesystem: local paths or URIs such as s3://bucket/prefix.

Every write goes to a temporary name beside its target (`.tmp-<random>-<name>`, hidden from
listings) and is moved into place, so a reader sees the old file or the new one, never half of one.
On a local filesystem the bytes are flushed to disk before the move and the move after it, so a
power cut cannot leave an empty file under the final name either. A process killed mid-write
leaves only its temporary file, which `remove_temp_files` clears on the next write of that place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import TEMP_PREFIX, temp_name, write_atomically


@dataclass(frozen=True)
class Storage:
    fs: pafs.FileSystem
    root: str

    @classmethod
    def from_uri(cls, uri: str) -> Storage:
        """Open a local path or any URI `pyarrow.fs.FileSystem.from_uri` understands."""
        if "://" not in uri:
            return cls(pafs.LocalFileSystem(), Path(uri).expanduser().resolve().as_posix())
        try:
            fs, root = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot open {_shown(uri)!r}: {exc}") from exc
        return cls(fs, root.rstrip("/"))

    def uri_of(self, path: str) -> str:
        if isinstance(self.fs, pafs.LocalFileSystem):
            return path
        return f"{self.fs.type_name}://{path}"

    def subdirs(self, directory: str) -> list[str]:
        selector = pafs.FileSelector(directory, allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        )

    def files(self, directory: str, suffix: str = "") -> list[str]:
        selector = pafs.FileSelector(directory, allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(suffix)
            and not info.base_name.startswith(".")
        )

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self, path: str) -> bytes | None:
        if not self.fs.get_file_info(path).is_file:
            return None
        with self.fs.open_input_stream(path) as handle:
            return handle.read()

    def read_parquet(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Read one Parquet file; unreadable content is bad input that names the file.

        An I/O failure (storage unreachable, permission, timeout) stays an `OSError`, which the
        Prefect tasks retry; pyarrow reports some corrupt footers as `OSError` too, so those are
        told apart by whether the file's bytes themselves can be read.
        """
        try:
            with self.fs.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                # a column the file lacks is for the caller's validation to name, not a
                # damaged file: read those it has
                present = parquet.schema_arrow.names
                wanted = [c for c in columns if c in present] if columns else None
                table = parquet.read(columns=wanted)
            _decode_names(list(table.schema))  # a damaged file may hold names that are not UTF-8
            return table
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
            if isinstance(exc, OSError) and not self._bytes_readable(path):
                raise OSError(f"cannot read {self.uri_of(path)}: {exc}") from exc
            reason = str(exc).splitlines()[0]
            raise InputError(
                f"{self.uri_of(path)}: not a readable Parquet file ({reason}); "
                "rewrite it with pyarrow or pandas.to_parquet"
            ) from exc

    def _bytes_readable(self, path: str) -> bool:
        try:
            with self.fs.open_input_stream(path) as handle:
                while handle.read(1 << 20):
                    pass
        except OSError:
            return False
        return True

    def remove_temp_files(self, directory: str) -> list[str]:
        """Delete what killed writers left in `directory`; call it holding the place's lock."""
        selector = pafs.FileSelector(directory, allow_not_found=True)
        removed = []
        for info in self.fs.get_file_info(selector):
            if info.is_file and info.base_name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.delete_file(info.path)
                    removed.append(info.path)
        return removed

    def _write_atomically(
        self,
        path: str,
        write: Callable[[pa.NativeFile], object],
        before_commit: Callable[[], None] | None,
    ) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):
            write_atomically(
                Path(path),
                lambda handle: write(pa.PythonFile(handle, mode="w")),
                before_commit=before_commit,
            )
            return
        # object stores have no rename; a move there is a copy, still whole or absent
        tmp = temp_name(path)
        try:
            with self.fs.open_output_stream(tmp) as out:
                write(out)
            if before_commit is not None:
                before_commit()
            self.fs.move(tmp, path)
        except BaseException:
            if self.fs.get_file_info(tmp).is_file:
                self.fs.delete_file(tmp)
            raise

    def write_table(self, path: str, table: pa.Table) -> None:
        self._write_atomically(
            path, lambda out: pq.write_table(table, out, compression="zstd"), None
        )

    def write_bytes(
        self, path: str, payload: bytes, *, before_commit: Callable[[], None] | None = None
    ) -> None:
        """Write `payload` to `path` atomically; `before_commit` runs once the bytes are written
        under the temporary name, before the move (the crash tests pause there)."""
        self._write_atomically(path, lambda out: out.write(payload), before_commit)


def _shown(uri: str) -> str:
    """`uri` without the keys it may hold: `KEY:SECRET@` before the bucket, and its query."""
    scheme, _, rest = uri.split("?", 1)[0].partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _decode_names(fields: list[pa.Field]) -> None:
    """Read every (nested) field name, so one that is not UTF-8 fails here and not later."""
    for f in fields:
        _ = f.name
        _decode_names([f.type.field(i) for i in range(f.type.num_fields)])

"""Storage under one root on any pyarrow filesystem: local paths or URIs such as s3://bucket/prefix.

A reader sees the old file or the new one, never half of one. On a local filesystem every write
goes to a temporary name beside its target (`.tmp-<random>-<name>`, hidden from listings) and is
moved into place; the bytes are flushed to disk before the move and the move after it, so a power
cut cannot leave an empty file under the final name either. A process killed mid-write leaves only
its temporary file, which `remove_temp_files` clears on the next write of that place. On an object
store an upload is already all or nothing (an object appears when its PUT, or its multipart
upload, completes), so the bytes are made whole in memory and uploaded to the final name at once:
one upload instead of an upload, a copy and a delete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import TEMP_PREFIX, write_atomically


@dataclass(frozen=True)
class FileStamp:
    """What a listing says of a file: enough to tell that it changed since it was read (a
    rewrite changes its modification time, to the second on S3, or its size)."""

    path: str
    size: int
    mtime_ns: int


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
            fs, root = pafs.FileSystem.from_uri(_single_upload(uri))
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

    def tree(self, directory: str, suffix: str = "") -> tuple[list[FileStamp], list[str]]:
        """Every file under `directory` and every folder, at any depth, from one recursive
        listing (on S3 one LIST request per 1,000 keys, not one per folder); hidden ones left
        out. Files ending in `suffix` only."""
        selector = pafs.FileSelector(directory, allow_not_found=True, recursive=True)
        files, folders = [], []
        for info in self.fs.get_file_info(selector):
            if any(part.startswith(".") for part in info.path[len(directory) :].split("/")):
                continue
            if info.type == pafs.FileType.Directory:
                folders.append(info.path)
            elif info.type == pafs.FileType.File and info.base_name.endswith(suffix):
                files.append(FileStamp(info.path, int(info.size or 0), int(info.mtime_ns or 0)))
        return sorted(files, key=lambda stamp: stamp.path), sorted(folders)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self, path: str) -> bytes | None:
        """The whole file, or None when there is none (on S3: one HEAD and one GET)."""
        try:
            with self.fs.open_input_file(path) as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError:
            if not self.fs.get_file_info(path).is_file:
                return None  # a folder of that name
            raise

    def read_parquet(
        self,
        path: str,
        columns: Sequence[str] | None = None,
        *,
        size: int | None = None,
        dictionary: Collection[str] = (),
    ) -> pa.Table:
        """Read one Parquet file; unreadable content is bad input that names the file.

        With its `size` (from a listing) an object store is not asked for it again (no HEAD).
        The columns' byte ranges are fetched together (pre-buffered), not one request each.
        An I/O failure (storage unreachable, permission, timeout) stays an `OSError`, which the
        Prefect tasks retry; pyarrow reports some corrupt footers as `OSError` too, so those are
        told apart by whether the file's bytes themselves can be read. String columns named in
        `dictionary` come dictionary-encoded, as Parquet stores them: no string is decoded.
        """
        try:
            if size is not None:
                table = _read_fragment(self.fs, path, size, columns, dictionary)
            else:
                with self.fs.open_input_file(path) as handle:
                    parquet = pq.ParquetFile(handle, pre_buffer=True)
                    # a column the file lacks is for the caller's validation to name, not a
                    # damaged file: read those it has
                    present = parquet.schema_arrow.names
                    encoded = [c for c in dictionary if c in present]
                    if encoded:  # the footer already read is reused
                        parquet = pq.ParquetFile(
                            handle,
                            pre_buffer=True,
                            metadata=parquet.metadata,
                            read_dictionary=encoded,
                        )
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
        # an object store has no rename (a move is a copy and a delete), but needs none: an
        # upload is whole or absent. The bytes are made whole first, so a failure while they
        # are made uploads nothing.
        sink = pa.BufferOutputStream()
        write(sink)
        payload = sink.getvalue()
        if before_commit is not None:
            before_commit()
        with self.fs.open_output_stream(path) as out:
            out.write(payload)

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


def _single_upload(uri: str) -> str:
    """An S3 URI with pyarrow's `allow_delayed_open`: an object smaller than an upload part is
    then sent by one PUT when it is closed, not by a multipart upload of three requests (both
    are all or nothing). A URI that sets the option keeps its own."""
    if not uri.startswith("s3://") or "allow_delayed_open=" in uri:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}allow_delayed_open=true"


def _shown(uri: str) -> str:
    """`uri` without the keys it may hold: `KEY:SECRET@` before the bucket, and its query."""
    scheme, _, rest = uri.split("?", 1)[0].partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _read_fragment(
    fs: pafs.FileSystem,
    path: str,
    size: int,
    columns: Sequence[str] | None,
    dictionary: Collection[str] = (),
) -> pa.Table:
    """One Parquet file of known size through pyarrow's dataset reader, which then asks an
    object store only for its byte ranges: the footer, then the columns' ranges together."""
    fragment = pads.ParquetFileFormat(
        read_options=pads.ParquetReadOptions(dictionary_columns=set(dictionary)),
        default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=True),
    ).make_fragment(path, filesystem=fs, file_size=size)
    present = fragment.physical_schema.names
    if len(set(present)) != len(present):
        # a name written twice: read as a file, so that validation names the column
        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle).read(columns=None)
    wanted = [c for c in columns if c in present] if columns else present
    return fragment.to_table(columns=wanted, use_threads=False)


def _decode_names(fields: list[pa.Field]) -> None:
    """Read every (nested) field name, so one that is not UTF-8 fails here and not later."""
    for f in fields:
        _ = f.name
        _decode_names([f.type.field(i) for i in range(f.type.num_fields)])

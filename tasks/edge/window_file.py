"""The window state's file in the lake (`monitoring/model=<model>/.window-state.arrow`).

One Arrow IPC file, zstd-compressed: the rows of every piece one after the other (`row_id`, `value`
and a classifier's `proba_<i>`), and in the schema's metadata, as JSON, the state's key, its run
day and, per partition in order, its files (path, size, modification time) and the number of rows
of each of its pieces, or the error its files met, and a scored batch's estimate before labels when
its own night made it. A file that is missing, unreadable, of another format or of another model
version is no state: the night reads its window from the raw files and writes a new one.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from core.errors import DriftlineError, InputError, RunError
from data_lake.lake import Lake
from data_lake.storage import FileStamp
from tasks.performance.estimate import PerformanceEstimate
from tasks.performance.window_pieces import LabelPiece, Partition, ScoredPiece
from tasks.performance.window_state import STATE_FORMAT, StateKey, WindowState

_META = b"driftline.window_state"
_ERRORS: dict[str, type[DriftlineError]] = {
    "InputError": InputError,
    "RunError": RunError,
    "DriftlineError": DriftlineError,
}
_KINDS = ("scored", "labels")
_ESTIMATE_FIELDS = tuple(f.name for f in dataclasses.fields(PerformanceEstimate))


def read_state(lake: Lake, key: StateKey) -> WindowState | None:
    """The state the last nights left for `key`'s model version, or None (then the window is
    read from the raw files). An I/O failure stays an OSError: the read is retried."""
    raw = lake.read_bytes(lake.window_state_path(key.model))
    if raw is None:
        return None
    try:
        return from_bytes(raw, key)
    except (pa.ArrowException, ValueError, KeyError, TypeError, IndexError):
        return None  # damaged, or written by another driftline: rebuilt from the raw files


def write_state(lake: Lake, state: WindowState) -> None:
    """Replace the model's state atomically."""
    lake.write_bytes(lake.window_state_path(state.key.model), to_bytes(state))


def to_bytes(state: WindowState) -> bytes:
    n_classes = len(state.key.classes)
    ids: list[pa.Array] = []
    values: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    partitions: list[dict[str, Any]] = []
    for kind, by_day in zip(_KINDS, (state.scored, state.labels), strict=True):
        for day in sorted(by_day):
            part = by_day[day]
            entry: dict[str, Any] = {
                "kind": kind,
                "day": day.isoformat(),
                "files": [[f.path, f.size, f.mtime_ns] for f in part.files],
            }
            if part.estimate is not None:
                entry["estimate"] = [getattr(part.estimate, f) for f in _ESTIMATE_FIELDS]
            if part.error is not None:
                entry["error"] = [type(part.error).__name__, str(part.error)]
            else:
                entry["rows"] = [len(piece.row_ids) for piece in part.pieces]
                for piece in part.pieces:
                    ids.append(piece.row_ids)
                    if isinstance(piece, ScoredPiece):
                        values.append(piece.predictions)
                        shape = (len(piece.row_ids), n_classes)
                        found = piece.probabilities
                        probabilities.append(found if found is not None else np.full(shape, np.nan))
                    else:
                        values.append(piece.targets)
                        probabilities.append(np.full((len(piece.row_ids), n_classes), np.nan))
            partitions.append(entry)
    meta = {
        "format": STATE_FORMAT,
        "key": [state.key.model, state.key.version, state.key.created_at, state.key.target,
                list(state.key.classes)],
        "run_day": state.run_day.isoformat(),
        "partitions": partitions,
    }  # fmt: skip
    matrix = np.concatenate([np.empty((0, n_classes)), *probabilities])
    columns = {
        "row_id": pa.concat_arrays([pa.array([], pa.string()), *ids]),
        "value": pa.array(np.concatenate([np.empty(0), *values]), pa.float64()),
        **{f"proba_{i}": pa.array(matrix[:, i], pa.float64()) for i in range(n_classes)},
    }
    table = pa.table(columns).replace_schema_metadata({_META: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def from_bytes(raw: bytes, key: StateKey) -> WindowState | None:
    """The state in `raw`, or None when it is of another format or model version; malformed
    content raises (ValueError, KeyError, TypeError or an Arrow error)."""
    table = pa.ipc.open_file(pa.BufferReader(raw)).read_all()
    meta = json.loads((table.schema.metadata or {})[_META])
    if meta["format"] != STATE_FORMAT:
        return None
    model, version, created_at, target, classes = meta["key"]
    if StateKey(model, version, created_at, target, tuple(classes)) != key:
        return None
    ids = table.column("row_id").combine_chunks()
    values = np.asarray(table.column("value").to_numpy(), dtype=np.float64)
    matrix = np.column_stack(
        [np.empty((table.num_rows, 0)), *(
            np.asarray(table.column(f"proba_{i}").to_numpy(), dtype=np.float64)
            for i in range(len(key.classes))
        )]
    )  # fmt: skip
    found: dict[str, dict[date, Partition]] = {kind: {} for kind in _KINDS}
    offset = 0
    for entry in meta["partitions"]:
        files = tuple(FileStamp(str(p), int(s), int(m)) for p, s, m in entry["files"])
        day = date.fromisoformat(entry["day"])
        estimate = _estimate(entry.get("estimate"))
        if "error" in entry:
            kind_name, message = entry["error"]
            found[entry["kind"]][day] = Partition(files, error=_ERRORS[kind_name](message))
            continue
        pieces: list[ScoredPiece | LabelPiece] = []
        for n in entry["rows"]:
            row_ids, piece_values = ids.slice(offset, n), values[offset : offset + n]
            if entry["kind"] == "scored":
                proba = matrix[offset : offset + n] if key.classes else None
                pieces.append(ScoredPiece(row_ids, piece_values, proba))
            else:
                pieces.append(LabelPiece(row_ids, piece_values))
            offset += n
        found[entry["kind"]][day] = Partition(files, tuple(pieces), estimate=estimate)
    if offset != table.num_rows:
        raise ValueError(f"the state holds {table.num_rows} rows, its partitions {offset}")
    return WindowState(key, date.fromisoformat(meta["run_day"]), found["scored"], found["labels"])


def _estimate(values: list[Any] | None) -> PerformanceEstimate | None:
    """A scored partition's estimate from its fields in order (JSON keeps each number exactly);
    a list of another length raises ValueError."""
    if values is None:
        return None
    return PerformanceEstimate(**dict(zip(_ESTIMATE_FIELDS, values, strict=True)))

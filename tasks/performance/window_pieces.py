"""What the performance window takes from each file it reads, in the form it computes with.

A scored batch gives its row_ids, its predictions as float64 (a classifier's: class codes) and a
classifier's probabilities; a label file its row_ids and targets as float64 (or class codes).
`tasks/performance/window.py` builds a window from these pieces, and the nights remember them
(tasks/edge/window_file.py), so a piece kept from an earlier night and one read again are the
same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import DriftlineError
from data_lake.columns import PREDICTION, ROW_ID
from data_lake.storage import FileStamp
from tasks.performance.classification import class_codes, probability_matrix
from tasks.performance.estimate import PerformanceEstimate
from tasks.stats.columns import as_float


@dataclass(frozen=True)
class ScoredPiece:
    """One scored batch: row_ids (string) and predictions, in file order."""

    row_ids: pa.Array
    predictions: np.ndarray
    probabilities: np.ndarray | None = None  # a classifier's, rows x classes


@dataclass(frozen=True)
class LabelPiece:
    """One label file: row_ids (string) and targets (NaN: a null label), in file order."""

    row_ids: pa.Array
    targets: np.ndarray


@dataclass(frozen=True)
class Partition:
    """One partition as a night read it: its files, and what they gave or why they could not
    be used (the error its first night met)."""

    files: tuple[FileStamp, ...]
    pieces: tuple[ScoredPiece | LabelPiece, ...] = ()
    error: DriftlineError | None = None
    # a scored batch's estimate before labels, as its own night made it (with the state's model
    # version); None when not known: a later night's band check then makes it again
    estimate: PerformanceEstimate | None = None

    def same_files(self, files: Sequence[FileStamp]) -> bool:
        """Whether a new listing of the partition shows the very files this was read from."""
        return self.files == tuple(files)


def _values(classes: Sequence[str]) -> Callable[[pa.ChunkedArray], np.ndarray]:
    return as_float if not classes else (lambda c: class_codes(c, classes))


def _ids(column: pa.ChunkedArray) -> pa.Array:
    return pc.cast(column, pa.string()).combine_chunks()


def scored_piece(table: pa.Table, classes: Sequence[str] = ()) -> ScoredPiece:
    """From a validated batch: row_id, prediction and a classifier's `proba_<class>` columns."""
    return ScoredPiece(
        _ids(table.column(ROW_ID)),
        np.asarray(_values(classes)(table.column(PREDICTION)), dtype=np.float64),
        probability_matrix(table, classes) if classes else None,
    )


def label_piece(table: pa.Table, target: str, classes: Sequence[str] = ()) -> LabelPiece:
    """From a validated label file: row_id and the target."""
    return LabelPiece(
        _ids(table.column(ROW_ID)),
        np.asarray(_values(classes)(table.column(target)), dtype=np.float64),
    )


def pieces_by_day(
    partitions: dict[date, Partition],
) -> tuple[list[tuple[date, ScoredPiece | LabelPiece]], dict[date, DriftlineError]]:
    """The pieces of the partitions in day order, then file order, and the days in error."""
    pieces = [
        (day, piece)
        for day in sorted(partitions)
        if partitions[day].error is None
        for piece in partitions[day].pieces
    ]
    errors = {
        day: error for day, part in sorted(partitions.items()) if (error := part.error) is not None
    }
    return pieces, errors

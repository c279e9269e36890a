"""The performance window a range of run days reads: one listing of the model's scored batches
and one of its labels, the partitions the last night remembered (tasks/performance/
window_state.py) where their files are unchanged, and only the other partitions read from the
lake; then the state of the range's last night written for the next one."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TypeVar

import pyarrow as pa

from core.errors import DriftlineError
from core.files import NoSpaceError
from data_lake.columns import PREDICTION, ROW_ID
from data_lake.lake import Lake
from data_lake.storage import FileStamp
from model_registry.registry import ModelCard
from tasks.edge import window_file
from tasks.edge.class_columns import probability_columns
from tasks.edge.validation import validate_labels, validate_scored_ids
from tasks.performance.estimate import PerformanceEstimate
from tasks.performance.window import Window, as_of, window_start
from tasks.performance.window_pieces import (
    LabelPiece,
    Partition,
    ScoredPiece,
    label_piece,
    pieces_by_day,
    scored_piece,
)
from tasks.performance.window_state import StateKey, WindowState, worth_writing

_READ_THREADS = 4
T = TypeVar("T")


def state_key(card: ModelCard) -> StateKey:
    return StateKey(card.name, card.version, card.created_at, card.target, tuple(card.classes))


def read_window(
    lake: Lake,
    card: ModelCard,
    start: date,
    end: date,
    *,
    window_days: int,
    current: pa.Table | None = None,
    current_estimate: PerformanceEstimate | None = None,
) -> Window:
    """The predictions and labels that the runs for start..end need, each file read once, and
    none that the last night's state holds unchanged.

    `current` is the batch of `end` (row_id, prediction) when the run already holds it, and
    `current_estimate` the estimate before labels the run made of it: the state remembers it
    for the later nights that check that batch's band. A file that is bad input fails only the
    days whose window reads it; an I/O error fails the read.
    """
    first, last_arrival = window_start(start, window_days), as_of(end)
    scored_files = {d: f for d, f in lake.scored_files(card.name).items() if first <= d <= end}
    label_files = {
        d: f for d, f in lake.label_files(card.name).items() if first < d <= last_arrival
    }
    key = state_key(card)
    old = window_file.read_state(lake, key)
    reader = _PartitionReader(lake, card, end, current, current_estimate)
    # the run's own batch, when in hand, is taken as read now rather than as remembered
    scored = _partitions(old, "scored", scored_files, reader.scored, fresh=reader.in_hand)
    labels = _partitions(old, "labels", label_files, reader.labels)
    scored_pieces, scored_errors = pieces_by_day(scored)
    label_pieces, label_errors = pieces_by_day(labels)
    window = Window.from_pieces(
        model=card.name,
        window_days=window_days,
        scored=[(d, p) for d, p in scored_pieces if isinstance(p, ScoredPiece)],
        labels=[(d, p) for d, p in label_pieces if isinstance(p, LabelPiece)],
        scored_errors=scored_errors,
        label_errors=label_errors,
        classes=card.classes,
        estimates={d: p.estimate for d, p in scored.items() if p.estimate is not None},
    )
    new = WindowState(key, end, scored, labels).trimmed(window_start(end, window_days), as_of(end))
    if worth_writing(new, old):
        # a cache: when it cannot be written, the next night reads more of the raw files
        with contextlib.suppress(OSError, NoSpaceError):
            window_file.write_state(lake, new)
    return window


def remember_estimates(
    lake: Lake, card: ModelCard, estimates: Mapping[date, PerformanceEstimate | None]
) -> None:
    """Give the model's state the estimates a range's runs made of batches it holds without
    one (a backfill reads its window's batches from their files before estimating them), so
    that a later night's band check does not read those batches again. A cache, as the state:
    storage failing here leaves it as it was."""
    with contextlib.suppress(OSError, NoSpaceError):
        old = window_file.read_state(lake, state_key(card))
        if old is None:
            return
        scored = {
            day: dataclasses.replace(part, estimate=estimate)
            if part.estimate is None
            and part.error is None
            and (estimate := estimates.get(day)) is not None
            else part
            for day, part in old.scored.items()
        }
        if any(scored[day] is not part for day, part in old.scored.items()):
            window_file.write_state(lake, WindowState(old.key, old.run_day, scored, old.labels))


def _partitions(
    old: WindowState | None,
    kind: str,
    listed: Mapping[date, Sequence[FileStamp]],
    read: Callable[[date, tuple[FileStamp, ...]], Partition],
    *,
    fresh: date | None = None,
) -> dict[date, Partition]:
    """Every listed partition: kept from the state when its files are the same, else read
    (`fresh`: read in any case)."""
    found: dict[date, Partition] = {}
    to_read = []
    for day, files in listed.items():
        kept = old.kept(kind, day, files) if old is not None and day != fresh else None
        if kept is not None:
            found[day] = kept
        else:
            to_read.append(day)
    for day, partition in _map(lambda d: read(d, tuple(listed[d])), to_read):
        found[day] = partition
    return dict(sorted(found.items()))


class _PartitionReader:
    """Reads one partition of the window from its listed files; bad input is kept as the
    partition's error, so that it fails only the runs that need it."""

    def __init__(
        self,
        lake: Lake,
        card: ModelCard,
        end: date,
        current: pa.Table | None,
        estimate: PerformanceEstimate | None,
    ) -> None:
        self.lake, self.card, self.end, self.current = lake, card, end, current
        self.estimate = estimate
        self.in_hand = end if current is not None else None

    def scored(self, day: date, files: tuple[FileStamp, ...]) -> Partition:
        card, lake = self.card, self.lake
        if self.current is not None and day == self.end:
            piece = scored_piece(self.current, card.classes)
            return Partition(files, (piece,), estimate=self.estimate)
        columns = [ROW_ID, PREDICTION, *probability_columns(card.classes)]
        source = f"batch {day} ({lake.uri_of(lake.scored_dir(card.name, day))})"
        try:
            # a folder without a Parquet file: the missing batch's own message
            read = (
                lake.read_batch_files(files, columns)
                if files
                else lake.read_scored(card.name, day, columns)
            )
            table = validate_scored_ids(read, source=source, classes=card.classes)
        except DriftlineError as exc:
            return Partition(files, error=exc)
        return Partition(files, (scored_piece(table, card.classes),))

    def labels(self, day: date, files: tuple[FileStamp, ...]) -> Partition:
        card, lake = self.card, self.lake
        try:
            pieces = tuple(
                label_piece(
                    validate_labels(
                        lake.read_parquet(f.path, size=f.size),
                        target=card.target,
                        source=lake.uri_of(f.path),
                        classes=card.classes,
                    ),
                    card.target,
                    card.classes,
                )
                for f in files
            )
        except DriftlineError as exc:
            return Partition(files, error=exc)
        return Partition(files, pieces)


def _map(read: Callable[[date], T], days: Sequence[date]) -> list[tuple[date, T]]:
    """`read` each day on a few threads (pyarrow reads release the GIL), in day order."""
    if len(days) <= 1:
        return [(day, read(day)) for day in days]
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        return list(zip(days, pool.map(read, days), strict=True))

"""What the nights remember of their performance window: every partition they read (scored
batch days, label arrival days), with the files it was read from and what those gave.

A night takes a partition from the remembered state only while a new listing shows the very same
files (path, size, modification time); any other partition of its window (a new day, a file added,
rewritten or removed, a partition the state never held) is read from the lake. The state is a
cache: results are the same with it, without it, or with any older one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from data_lake.storage import FileStamp
from tasks.performance.window_pieces import Partition

# raised whenever what a piece holds, how a file is read or how a batch is estimated changes
STATE_FORMAT = 2


@dataclass(frozen=True)
class StateKey:
    """The model version a state was read for: its pieces depend on the card's target, classes
    and columns, so another version's state is never used."""

    model: str
    version: str
    created_at: str
    target: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class WindowState:
    key: StateKey
    run_day: date  # the newest batch day of the run that wrote it
    scored: Mapping[date, Partition]  # by batch day
    labels: Mapping[date, Partition]  # by arrival day

    def kept(self, kind: str, day: date, files: Sequence[FileStamp]) -> Partition | None:
        """The remembered partition, if the lake still holds exactly the files it came from.
        A folder without files is read again: what a missing batch says names the days the
        lake holds that night."""
        if not files:
            return None
        known = (self.scored if kind == "scored" else self.labels).get(day)
        return known if known is not None and known.same_files(files) else None

    def trimmed(self, first_batch: date, last_arrival: date) -> WindowState:
        """Only the partitions of the window of the run for `run_day`: scored batches from
        `first_batch` on, labels that arrived after it and by `last_arrival`."""
        return WindowState(
            self.key,
            self.run_day,
            {d: p for d, p in self.scored.items() if first_batch <= d <= self.run_day},
            {d: p for d, p in self.labels.items() if first_batch < d <= last_arrival},
        )

    def same_as(self, other: WindowState | None) -> bool:
        """Whether `other` holds the very partitions of this one (nothing new to write)."""
        if other is None or (other.key, other.run_day) != (self.key, self.run_day):
            return False
        return _same(self.scored, other.scored) and _same(self.labels, other.labels)


def _same(mine: Mapping[date, Partition], theirs: Mapping[date, Partition]) -> bool:
    return mine.keys() == theirs.keys() and all(mine[d] is theirs[d] for d in mine)


def worth_writing(new: WindowState, old: WindowState | None) -> bool:
    """A run writes its state unless the lake holds a newer night's (a rerun of an older day,
    a backfill of an older range) or the very same one."""
    if old is None or old.key != new.key:
        return True
    return new.run_day >= old.run_day and not new.same_as(old)

"""The data lake: Hive-style Parquet partitions under one root (docs/contract.md, "Data lake").

Paths are built here and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.fs as pafs

from core.errors import InputError, RunError
from core.settings import LockPolicy
from data_lake import lock
from data_lake.columns import ARRIVAL_DATE, BATCH_DATE
from data_lake.storage import FileStamp, Storage


@dataclass(frozen=True)
class Lake(Storage):
    @classmethod
    def open(cls, uri: str) -> Lake:
        storage = Storage.from_uri(uri)
        return cls(storage.fs, storage.root)

    # paths ---------------------------------------------------------------------------------
    def scored_dir(self, model: str, batch_date: date) -> str:
        return f"{self.root}/scored/model={model}/{BATCH_DATE}={batch_date.isoformat()}"

    def labels_dir(self, model: str, arrival_date: date) -> str:
        return f"{self.root}/labels/model={model}/{ARRIVAL_DATE}={arrival_date.isoformat()}"

    def result_path(self, model: str, batch_date: date) -> str:
        day = batch_date.isoformat()
        return f"{self.root}/monitoring/model={model}/batch_date={day}/result.json"

    def report_path(self, model: str, batch_date: date) -> str:
        """The day's report for people (HTML, pictures inline), beside its result."""
        return self.result_path(model, batch_date).rsplit("/", 1)[0] + "/report.html"

    def window_state_path(self, model: str) -> str:
        """What the last nights read of their performance window (tasks/edge/window_file.py):
        a cache beside the results, rebuilt from the raw files when missing or stale; hidden,
        as the locks are, because it is driftline's own and not a result."""
        return f"{self.root}/monitoring/model={model}/.window-state.arrow"

    def lock_path(self, model: str, batch_date: date) -> str:
        # beside the partitions, in a folder that Hive readers and the date listings skip
        day = batch_date.isoformat()
        return f"{self.root}/monitoring/model={model}/.locks/batch_date={day}.lock"

    # listing -------------------------------------------------------------------------------
    def _partition_dates(self, base: str, key: str) -> list[date]:
        found = []
        for name in self.subdirs(base):
            if name.startswith(f"{key}="):
                try:
                    found.append(date.fromisoformat(name.split("=", 1)[1]))
                except ValueError:
                    continue  # not one of ours; a stray folder must not break the run
        return sorted(found)

    def scored_dates(self, model: str) -> list[date]:
        return self._partition_dates(f"{self.root}/scored/model={model}", BATCH_DATE)

    def label_arrival_dates(self, model: str) -> list[date]:
        return self._partition_dates(f"{self.root}/labels/model={model}", ARRIVAL_DATE)

    def scored_files(self, model: str) -> dict[date, tuple[FileStamp, ...]]:
        """Every scored batch day with its files, from one recursive listing of the model."""
        return self._partition_files(f"{self.root}/scored/model={model}", BATCH_DATE)

    def label_files(self, model: str) -> dict[date, tuple[FileStamp, ...]]:
        """Every label arrival day with its files, from one recursive listing of the model."""
        return self._partition_files(f"{self.root}/labels/model={model}", ARRIVAL_DATE)

    def _partition_files(self, base: str, key: str) -> dict[date, tuple[FileStamp, ...]]:
        """Each `key=<date>` folder with the `*.parquet` files right inside it, as `files` gives
        them for one folder, in name order (none: a folder without a Parquet file)."""
        files, folders = self.tree(base, ".parquet")
        found: dict[date, list[FileStamp]] = {}
        for path in [*folders, *(stamp.path for stamp in files)]:
            parts = path[len(base) + 1 :].split("/")
            if len(parts) > 2 or not parts[0].startswith(f"{key}="):
                continue
            try:
                day = date.fromisoformat(parts[0].split("=", 1)[1])
            except ValueError:
                continue  # not one of ours; a stray folder must not break the run
            found.setdefault(day, [])
        for stamp in files:
            parts = stamp.path[len(base) + 1 :].split("/")
            if len(parts) == 2 and parts[0].startswith(f"{key}="):
                with contextlib.suppress(ValueError):
                    found[date.fromisoformat(parts[0].split("=", 1)[1])].append(stamp)
        return {day: tuple(found[day]) for day in sorted(found)}

    def result_dates(self, model: str) -> list[date]:
        """Days with a complete result (a run killed before its move leaves only a folder)."""
        base = f"{self.root}/monitoring/model={model}"
        return [
            day
            for day in self._partition_dates(base, BATCH_DATE)
            if self.fs.get_file_info(self.result_path(model, day)).is_file
        ]

    # reading -------------------------------------------------------------------------------
    def read_scored(
        self,
        model: str,
        batch_date: date,
        columns: Sequence[str] | None = None,
        *,
        dictionary: Collection[str] = (),
    ) -> pa.Table:
        """All files of one scored batch, concatenated; a missing partition is a failed run.
        String columns named in `dictionary` are read dictionary-encoded."""
        directory = self.scored_dir(model, batch_date)
        files = self.files(directory, ".parquet")
        if not files:
            if self.fs.get_file_info(self.root).type == pafs.FileType.NotFound:
                # the whole lake gone is an outage (an unmounted share), not a missing batch
                raise OSError(
                    f"the data lake root {self.uri_of(self.root)} is not there "
                    "(unmounted or unreachable?)"
                )
            days = self.scored_dates(model)
            known = (
                f"scored batches: {days[0]} .. {days[-1]}, {len(days)} day(s)"
                if days
                else "no scored batches at all for this model"
            )
            raise RunError(
                f"no scored batch for model={model} batch_date={batch_date}: "
                f"no *.parquet under {self.uri_of(directory)} ({known})"
            )
        return self.read_batch_files(files, columns, dictionary=dictionary)

    def read_batch_files(
        self,
        files: Sequence[str | FileStamp],
        columns: Sequence[str] | None = None,
        *,
        dictionary: Collection[str] = (),
    ) -> pa.Table:
        """The files of one scored batch, concatenated; they must share one schema. Files given
        with their listing's stamps are read without asking their size again."""
        paths = [f.path if isinstance(f, FileStamp) else f for f in files]
        tables = [
            self.read_parquet(f.path, columns, size=f.size, dictionary=dictionary)
            if isinstance(f, FileStamp)
            else self.read_parquet(f, columns, dictionary=dictionary)
            for f in files
        ]
        first = tables[0].schema
        for path, table in zip(paths[1:], tables[1:], strict=True):
            if not table.schema.equals(first):
                raise InputError(
                    f"{self.uri_of(path)}: schema differs from {self.uri_of(paths[0])} "
                    f"(expected {first.names}, found {table.schema.names}); "
                    "write every file of a batch with the same columns and types"
                )
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    # writing -------------------------------------------------------------------------------
    def replace_partition(self, directory: str, name: str, table: pa.Table) -> None:
        """Write `name` into `directory`, drop the partition's other files (idempotent rewrite)."""
        target = f"{directory}/{name}"
        self.write_table(target, table)
        for other in self.files(directory, ".parquet"):
            if other != target:
                self.fs.delete_file(other)

    # one writer per model and day ---------------------------------------------------------
    @contextmanager
    def day_lock(
        self,
        model: str,
        batch_date: date,
        *,
        purpose: str,
        policy: LockPolicy | None = None,
        on_wait: Callable[[lock.LockOwner | None], None] | None = None,
        on_takeover: Callable[[lock.LockOwner | None, str], None] | None = None,
    ) -> Iterator[lock.LakeLock]:
        """Hold the model's day while writing its results (and pushing them).

        Inside, temporary files that killed runs left in the day's folder are removed.
        """
        held = lock.acquire(
            self,
            self.lock_path(model, batch_date),
            purpose=purpose,
            policy=policy or LockPolicy(),
            on_wait=on_wait,
            on_takeover=on_takeover,
        )
        try:
            self.remove_temp_files(self.result_path(model, batch_date).rsplit("/", 1)[0])
            yield held
        finally:
            held.release()

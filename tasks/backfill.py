"""Backfill: the nightly run replayed for a range of days, reading the range's inputs once.

The nightly run for day D reads the predictions of the 30 batches of its performance window and
every label partition that arrived in it. Replaying a year that way rereads each file 30 times.
Here the predictions and labels of the whole range are read once into arrays, and each batch's
performance is computed once per set of label arrivals it has seen: a batch whose labels stopped
arriving keeps the same numbers for the rest of its window. The result of every day is the one
`tasks.monitoring.monitor_day` gives (tests compare the two, byte for byte, as JSON). Days the
fast path cannot reproduce exactly (a row_id in two batches of the window) take the nightly path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_lake.lake import Lake
from driftline.errors import DriftlineError, InputError
from driftline.settings import Settings
from model_registry.registry import ModelCard
from tasks import monitoring
from tasks.drift_report import drift_report
from tasks.monitoring import ModelContext, PerformanceOutcome
from tasks.performance import BatchPerformance, regression_metrics
from tasks.results import MonitoringResult, to_json
from tasks.validation import PREDICTION, ROW_ID, validate_labels

MAX_BACKFILL_DAYS = 3660
_READ_THREADS = 4
T = TypeVar("T")


def days_between(start: date, end: date) -> list[date]:
    """Every day from `start` to `end`, both included."""
    if end < start:
        raise InputError(f"--end {end} is before --start {start}; pass a range with start <= end")
    days = (end - start).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise InputError(
            f"range {start}..{end} has {days} days, more than {MAX_BACKFILL_DAYS}; "
            "split it into smaller ranges"
        )
    return [start + timedelta(days=i) for i in range(days)]


@dataclass(frozen=True)
class _Batch:
    """One scored batch: predictions in file order and the label events for its rows."""

    predictions: np.ndarray  # float64, file order
    arrivals: np.ndarray  # int64 ordinals of each label event, ascending (read order)
    rows: np.ndarray  # int64 row index in the batch of each label event
    targets: np.ndarray  # float64 label of each event (NaN: a null label)


class RangeInputs:
    """Predictions and labels of a range of days and their performance windows, read once.

    A plain class rather than a dataclass so that Prefect does not walk its arrays when it is
    passed to mapped tasks.
    """

    def __init__(
        self,
        *,
        first_day: date,
        batches: dict[date, _Batch],
        label_arrivals: np.ndarray,
        label_codes: np.ndarray,
        label_batches: np.ndarray,
        scored_errors: dict[date, DriftlineError],
        label_errors: dict[date, DriftlineError],
        shared_row_id_batches: list[frozenset[date]],
    ) -> None:
        self.first_day = first_day
        self.batches = batches
        self.label_arrivals = label_arrivals  # every label event, in read order
        self.label_codes = label_codes  # a code per distinct row_id
        self.label_batches = label_batches  # ordinal of the row's batch, -1 when unknown
        self.scored_errors = scored_errors
        self.label_errors = label_errors
        self.shared_row_id_batches = shared_row_id_batches
        self._memo: dict[tuple[date, tuple[int, ...]], BatchPerformance] = {}

    def needs_nightly_path(self, batch_date: date, window_days: int) -> bool:
        """True when the window holds a row_id in two batches: the nightly path reports it."""
        first = batch_date - timedelta(days=window_days - 1)
        return first < self.first_day or any(
            sum(first <= d <= batch_date for d in shared) > 1
            for shared in self.shared_row_id_batches
        )

    def batch_performance(self, batch_date: date, lo: int, hi: int) -> BatchPerformance | None:
        """Performance of one batch with the labels that arrived in (lo, hi] (ordinals)."""
        batch = self.batches[batch_date]
        n_rows = batch.predictions.size
        if n_rows == 0:
            return None  # no rows, no group: the nightly run lists no such batch
        left, right = np.searchsorted(batch.arrivals, [lo, hi], side="right")
        key = (batch_date, tuple(np.unique(batch.arrivals[left:right]).tolist()))
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        rows = batch.rows[left:right]
        # the latest arrival of a row wins: its last event in read order
        unique_rows, last_from_end = np.unique(rows[::-1], return_index=True)
        targets = batch.targets[left:right][rows.size - 1 - last_from_end]
        labelled = ~np.isnan(targets)
        y_true = targets[labelled]
        y_pred = batch.predictions[unique_rows[labelled]]
        n_labelled = int(labelled.sum())
        performance = BatchPerformance(
            batch_date=batch_date,
            n_rows=n_rows,
            n_labelled=n_labelled,
            label_coverage_ratio=n_labelled / n_rows,
            metrics=regression_metrics(y_true, y_pred) if n_labelled else None,
        )
        self._memo[key] = performance
        return performance


def _in_order(
    fn: Callable[[date], T], days: Iterable[date]
) -> list[tuple[date, T | None, DriftlineError | None]]:
    """Apply `fn` to each day on a few threads (pyarrow reads release the GIL), keeping order."""

    def attempt(day: date) -> tuple[date, T | None, DriftlineError | None]:
        try:
            return day, fn(day), None
        except DriftlineError as exc:
            return day, None, exc

    with ThreadPoolExecutor(_READ_THREADS) as pool:
        return list(pool.map(attempt, days))


def load_range_inputs(
    lake: Lake, card: ModelCard, start: date, end: date, *, window_days: int
) -> RangeInputs:
    """Read the predictions and labels that the runs for start..end need, each file once."""
    first = start - timedelta(days=window_days - 1)
    last_arrival = monitoring.as_of(end)
    scored_days = [d for d in lake.scored_dates(card.name) if first <= d <= end]
    arrival_days = [d for d in lake.label_arrival_dates(card.name) if first < d <= last_arrival]

    def read_scored(day: date) -> pa.Table:
        return lake.read_scored(card.name, day, columns=[ROW_ID, PREDICTION])

    def read_labels(day: date) -> list[pa.Table]:
        return [
            validate_labels(lake.read_parquet(path), target=card.target, source=lake.uri_of(path))
            for path in lake.files(lake.labels_dir(card.name, day), ".parquet")
        ]

    scored_errors: dict[date, DriftlineError] = {}
    scored_tables: list[pa.Table] = []
    predictions: dict[date, np.ndarray] = {}
    for day, table, error in _in_order(read_scored, scored_days):
        if error is not None or table is None:
            scored_errors[day] = error or InputError(f"batch {day} could not be read")
            continue
        predictions[day] = np.asarray(
            pc.cast(table.column(PREDICTION), pa.float64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        n = table.num_rows
        scored_tables.append(
            pa.table(
                {
                    ROW_ID: pc.cast(table.column(ROW_ID), pa.string()),
                    "batch": pa.array(np.full(n, day.toordinal(), dtype=np.int64)),
                    "row": pa.array(np.arange(n, dtype=np.int64)),
                }
            )
        )
    label_errors: dict[date, DriftlineError] = {}
    label_tables: list[pa.Table] = []
    for day, tables, error in _in_order(read_labels, arrival_days):
        if error is not None or tables is None:
            label_errors[day] = error or InputError(f"labels of {day} could not be read")
            continue
        for table in tables:
            label_tables.append(
                pa.table(
                    {
                        ROW_ID: pc.cast(table.column(ROW_ID), pa.string()),
                        "target": pc.cast(table.column(card.target), pa.float64()),
                        "arrival": pa.array(np.full(table.num_rows, day.toordinal(), np.int64)),
                    }
                )
            )

    scored = _concat(scored_tables, {ROW_ID: pa.string(), "batch": pa.int64(), "row": pa.int64()})
    labels = _concat(
        label_tables, {ROW_ID: pa.string(), "target": pa.float64(), "arrival": pa.int64()}
    )
    labels = labels.append_column("seq", pa.array(np.arange(labels.num_rows, dtype=np.int64)))
    shared = _shared_row_ids(scored)
    # a left join tells each label event the batch of its row (-1: a row we have not read)
    joined = labels.join(scored, keys=ROW_ID, join_type="left outer").sort_by("seq")
    arrivals = joined.column("arrival").to_numpy()
    batch_of = pc.fill_null(joined.column("batch"), -1).to_numpy()
    rows = pc.fill_null(joined.column("row"), -1).to_numpy()
    targets = np.asarray(joined.column("target").to_numpy(zero_copy_only=False), dtype=np.float64)
    codes = pc.dictionary_encode(joined.column(ROW_ID)).combine_chunks().indices.to_numpy()

    order = np.lexsort((joined.column("seq").to_numpy(), batch_of))
    sorted_batches = batch_of[order]
    batches: dict[date, _Batch] = {}
    for day, preds in predictions.items():
        lo, hi = np.searchsorted(sorted_batches, [day.toordinal(), day.toordinal() + 1])
        events = order[lo:hi]
        batches[day] = _Batch(preds, arrivals[events], rows[events], targets[events])
    return RangeInputs(
        first_day=first,
        batches=batches,
        label_arrivals=arrivals,
        label_codes=codes,
        label_batches=batch_of,
        scored_errors=scored_errors,
        label_errors=label_errors,
        shared_row_id_batches=shared,
    )


def _concat(tables: list[pa.Table], schema: dict[str, pa.DataType]) -> pa.Table:
    if not tables:
        return pa.table({name: pa.array([], type=t) for name, t in schema.items()})
    return pa.concat_tables(tables).combine_chunks()


def _shared_row_ids(scored: pa.Table) -> list[frozenset[date]]:
    """The sets of batches that share a row_id (row_id must be unique within a model)."""
    counts = scored.group_by(ROW_ID).aggregate([("batch", "count_distinct")])
    if scored.num_rows == 0 or pc.max(counts.column("batch_count_distinct")).as_py() <= 1:
        shared_ids = []
    else:
        shared_ids = counts.filter(pc.greater(counts.column("batch_count_distinct"), 1)).column(
            ROW_ID
        )
    if len(shared_ids) == 0:
        return []
    rows = scored.filter(pc.is_in(scored.column(ROW_ID), value_set=shared_ids))
    groups = rows.group_by(ROW_ID).aggregate([("batch", "distinct")])
    return list(
        {
            frozenset(date.fromordinal(o) for o in b)
            for b in groups.column("batch_distinct").to_pylist()
        }
    )


def performance_for_day(
    inputs: RangeInputs, batch_date: date, *, window_days: int
) -> PerformanceOutcome:
    """What `monitoring.read_performance_inputs` + `compute_performance` give for the day."""
    first = batch_date - timedelta(days=window_days - 1)
    lo, hi = first.toordinal(), monitoring.as_of(batch_date).toordinal()
    # the nightly run reads the window's earlier batches, then the label arrivals, in order
    for day in sorted(inputs.scored_errors):
        if first <= day < batch_date:
            raise inputs.scored_errors[day]
    for day in sorted(inputs.label_errors):
        if lo < day.toordinal() <= hi:
            raise inputs.label_errors[day]
    window = [d for d in sorted(inputs.batches) if first <= d <= batch_date]
    batches = tuple(p for d in window if (p := inputs.batch_performance(d, lo, hi)) is not None)
    left, right = np.searchsorted(inputs.label_arrivals, [lo, hi], side="right")
    outside = inputs.label_batches[left:right]
    outside_window = (outside < lo) | (outside > batch_date.toordinal())
    unmatched = int(np.unique(inputs.label_codes[left:right][outside_window]).size)
    # the same wording as monitoring.compute_performance
    warnings = (
        (f"{unmatched} label(s) match no scored row of the last batches and were skipped",)
        if unmatched
        else ()
    )
    return PerformanceOutcome(batches, unmatched, warnings)


def replay_day(
    lake: Lake,
    context: ModelContext,
    inputs: RangeInputs,
    batch_date: date,
    settings: Settings,
) -> MonitoringResult:
    """The nightly run's result for `batch_date`, from the range's inputs."""
    window_days = settings.performance_window_days
    if inputs.needs_nightly_path(batch_date, window_days):
        return monitoring.monitor_day(lake, context, batch_date, settings)
    batch = monitoring.read_batch(lake, context.card, batch_date)
    drift = drift_report(context.profile, batch.table, settings.drift_rule)
    performance = performance_for_day(inputs, batch_date, window_days=window_days)
    return monitoring.assemble(context, batch_date, batch, drift, performance, settings)


@dataclass(frozen=True)
class DayOutcome:
    """One replayed day: its result, or why it failed; and how long it took."""

    batch_date: date
    result: MonitoringResult | None
    failure: str | None
    duration_seconds: float


def replay_and_write(
    lake: Lake, context: ModelContext, inputs: RangeInputs, batch_date: date, settings: Settings
) -> DayOutcome:
    """Replay one day and write its result where the nightly run writes it."""
    started = time.perf_counter()
    result = replay_day(lake, context, inputs, batch_date, settings)
    lake.write_bytes(lake.result_path(result.model, result.batch_date), to_json(result))
    return DayOutcome(batch_date, result, None, time.perf_counter() - started)


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did: the days replayed, those that failed and why, where history went."""

    model: str
    start: date
    end: date
    succeeded: tuple[date, ...]
    failed: tuple[tuple[date, str], ...]
    history: str | None
    duration_seconds: float

    def lines(self) -> list[str]:
        days = (self.end - self.start).days + 1
        head = (
            f"backfill {self.model} {self.start}..{self.end}: {len(self.succeeded)} of {days} "
            f"day(s) replayed in {self.duration_seconds:.1f} s, {len(self.failed)} failed"
        )
        tail = [f"history: {self.history}"] if self.history else []
        return [head, *(f"  {day} failed: {reason}" for day, reason in self.failed), *tail]


def summary_markdown(report: BackfillReport) -> str:
    lines = [f"# Backfill of {report.model}: {report.start} to {report.end}", ""]
    lines += [f"- {line.strip()}" for line in report.lines()[:1]]
    if report.history:
        lines.append(f"- history: {report.history}")
    if report.failed:
        lines += ["", "| day | reason |", "|---|---|"]
        lines += [f"| {day} | {reason.replace('|', '/')} |" for day, reason in report.failed]
    return "\n".join(lines) + "\n"


def failure_reason(error: BaseException) -> str:
    """Driftline's own errors already say what to do; anything else gets its type named."""
    if isinstance(error, DriftlineError):
        return str(error)
    return f"{type(error).__name__}: {error}"

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

import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Failed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from data_lake.lake import Lake
from driftline.errors import DriftlineError, InputError
from driftline.settings import Settings
from model_registry.registry import ModelCard
from tasks import history, monitoring
from tasks.drift_report import drift_report
from tasks.monitoring import ModelContext, PerformanceOutcome, performance_outcome
from tasks.performance import BatchPerformance, regression_metrics
from tasks.results import MonitoringResult, to_json
from tasks.steps import IO_RETRY_DELAYS, artifact_key, transient
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
        """True when a batch of the window shares a row_id with another batch.

        The nightly path then reports the duplicate, or matches labels to the right batch.
        """
        first = batch_date - timedelta(days=window_days - 1)
        return first < self.first_day or any(
            first <= d <= batch_date for shared in self.shared_row_id_batches for d in shared
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
    ids: list[pa.Array] = []  # row_ids of the scored rows, then of the label events
    scored_batch: list[np.ndarray] = []
    predictions: dict[date, np.ndarray] = {}
    for day, table, error in _in_order(read_scored, scored_days):
        if error is not None or table is None:
            scored_errors[day] = error or InputError(f"batch {day} could not be read")
            continue
        predictions[day] = np.asarray(
            pc.cast(table.column(PREDICTION), pa.float64()).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        ids.extend(pc.cast(table.column(ROW_ID), pa.string()).chunks)
        scored_batch.append(np.full(table.num_rows, day.toordinal(), dtype=np.int64))
    label_errors: dict[date, DriftlineError] = {}
    label_targets: list[np.ndarray] = []
    label_arrival: list[np.ndarray] = []
    for day, tables, error in _in_order(read_labels, arrival_days):
        if error is not None or tables is None:
            label_errors[day] = error or InputError(f"labels of {day} could not be read")
            continue
        for table in tables:
            ids.extend(pc.cast(table.column(ROW_ID), pa.string()).chunks)
            label_targets.append(_floats(table.column(card.target)))
            label_arrival.append(np.full(table.num_rows, day.toordinal(), dtype=np.int64))

    # one hash pass gives every row_id an integer code; the rest is integer arithmetic
    codes = _codes(ids)
    batch_of_row = np.concatenate([np.empty(0, np.int64), *scored_batch])
    n_scored = batch_of_row.size
    scored_codes, label_codes = codes[:n_scored], codes[n_scored:]
    row_in_batch = np.concatenate(
        [np.empty(0, np.int64), *(np.arange(b.size, dtype=np.int64) for b in scored_batch)]
    )
    shared = _shared_row_ids(scored_codes, batch_of_row)
    # the batch and row of each label's row_id (-1: a row not read, outside the windows)
    size = int(codes.max()) + 1 if codes.size else 0
    batch_of_code = np.full(size, -1, dtype=np.int64)
    row_of_code = np.full(size, -1, dtype=np.int64)
    batch_of_code[scored_codes] = batch_of_row
    row_of_code[scored_codes] = row_in_batch
    arrivals = np.concatenate([np.empty(0, np.int64), *label_arrival])
    targets = np.concatenate([np.empty(0, np.float64), *label_targets])
    label_batches = batch_of_code[label_codes]
    label_rows = row_of_code[label_codes]

    order = np.argsort(label_batches, kind="stable")  # per batch, in read order
    sorted_batches = label_batches[order]
    batches: dict[date, _Batch] = {}
    for day, preds in predictions.items():
        lo, hi = np.searchsorted(sorted_batches, [day.toordinal(), day.toordinal() + 1])
        events = order[lo:hi]
        batches[day] = _Batch(preds, arrivals[events], label_rows[events], targets[events])
    return RangeInputs(
        first_day=first,
        batches=batches,
        label_arrivals=arrivals,
        label_codes=label_codes,
        label_batches=label_batches,
        scored_errors=scored_errors,
        label_errors=label_errors,
        shared_row_id_batches=shared,
    )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    floats = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(floats, dtype=np.float64)


def _codes(ids: list[pa.Array]) -> np.ndarray:
    """An integer per distinct row_id, for every row_id in `ids`, in order."""
    if not ids:
        return np.empty(0, dtype=np.int64)
    encoded = pc.dictionary_encode(pa.chunked_array(ids, type=pa.string()).combine_chunks())
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _shared_row_ids(codes: np.ndarray, batch_of_row: np.ndarray) -> list[frozenset[date]]:
    """The sets of batches that share a row_id (row_id must be unique within a model)."""
    if codes.size == 0:
        return []
    counts = np.bincount(codes)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size == 0:
        return []
    sets: dict[int, set[int]] = {}
    for code, batch in zip(
        codes[np.isin(codes, repeated)], batch_of_row[np.isin(codes, repeated)], strict=True
    ):
        sets.setdefault(int(code), set()).add(int(batch))
    return list({frozenset(date.fromordinal(b) for b in bs) for bs in sets.values() if len(bs) > 1})


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
    return performance_outcome(batches, unmatched)


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
    # the nightly run's lock: a backfill never interleaves with a run of the same day
    with lake.day_lock(
        result.model,
        result.batch_date,
        purpose=f"backfill {result.model} {result.batch_date}",
        policy=settings.lock_policy,
    ):
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


# Prefect tasks: names, retries on I/O, logging ------------------------------------------------
@task(
    name="load-range-inputs",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=[float(s) for s in IO_RETRY_DELAYS],
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def load_inputs(settings: Settings, context: ModelContext, start: date, end: date) -> RangeInputs:
    inputs = load_range_inputs(
        Lake.open(settings.data_lake_uri),
        context.card,
        start,
        end,
        window_days=settings.performance_window_days,
    )
    logger = get_run_logger()
    logger.info(
        "read %d scored batches and the labels of %s..%s for %s..%s",
        len(inputs.batches),
        inputs.first_day,
        monitoring.as_of(end),
        start,
        end,
    )
    for day, error in sorted({**inputs.scored_errors, **inputs.label_errors}.items()):
        logger.warning("%s unreadable, the days that need it will fail: %s", day, error)
    return inputs


def _replay_name() -> str:
    from prefect.runtime import task_run

    return f"replay-{task_run.parameters['batch_date']}"


@task(
    name="replay-day",
    task_run_name=_replay_name,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def replay(
    settings: Settings, context: ModelContext, inputs: RangeInputs, batch_date: date
) -> DayOutcome | State[Any]:
    """One day's nightly run, written to the lake; a day that cannot run ends Failed, quietly."""
    try:
        return replay_and_write(
            Lake.open(settings.data_lake_uri), context, inputs, batch_date, settings
        )
    except DriftlineError as exc:
        # bad input or a missing batch: one line that says what to do, no traceback, no retry
        get_run_logger().error("%s failed: %s", batch_date, exc)
        return Failed(message=str(exc), data=exc)


def _outcome(future: PrefectFuture[Any], batch_date: date) -> DayOutcome:
    value = future.result(raise_on_failure=False)
    if isinstance(value, DayOutcome):
        return value
    error = value if isinstance(value, BaseException) else RuntimeError(str(value))
    return DayOutcome(batch_date, None, failure_reason(error), 0.0)


def wait_for_days(
    futures: Sequence[PrefectFuture[Any]], days: Sequence[date], *, model: str
) -> list[DayOutcome]:
    """Collect the days as they finish: a bar on stderr, a line in the run's log every tenth."""
    logger = get_run_logger()
    day_of = {future.task_run_id: day for future, day in zip(futures, days, strict=True)}
    outcomes: list[DayOutcome] = []
    every = max(1, len(futures) // 10)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        # leave stdout alone: the command prints its report there after the bar
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        bar = progress.add_task(f"backfill {model}", total=len(futures), failed=0)
        for future in as_completed(list(futures)):
            outcomes.append(_outcome(future, day_of[future.task_run_id]))
            failed = sum(o.failure is not None for o in outcomes)
            progress.update(bar, advance=1, failed=failed)
            if len(outcomes) % every == 0 or len(outcomes) == len(futures):
                logger.info("%d/%d days replayed, %d failed", len(outcomes), len(futures), failed)
    return sorted(outcomes, key=lambda o: o.batch_date)


@task(name="export-history", cache_policy=NO_CACHE)
def export_history(
    settings: Settings,
    model: str,
    outcomes: Sequence[DayOutcome],
    *,
    prometheus_data: str | None,
    openmetrics: str | None,
) -> str | None:
    """The replayed days' gauges at event time: an OpenMetrics file, or blocks in a data dir."""
    if prometheus_data and openmetrics:
        raise InputError("pass --prometheus-data or --openmetrics, not both")
    if not (prometheus_data or openmetrics):
        return None
    runs = [history.PastRun(o.result, o.duration_seconds) for o in outcomes if o.result is not None]
    if not runs:
        get_run_logger().warning("no day succeeded: no history to export")
        return None
    payload = history.openmetrics_text(history.history_families(runs))
    logger = get_run_logger()
    if openmetrics:
        history.write_openmetrics(Path(openmetrics), payload)
        logger.info("history of %d day(s) written to %s", len(runs), openmetrics)
        return f"OpenMetrics file {openmetrics}"
    data_dir = Path(str(prometheus_data))
    cleared = history.clear_days(
        settings.prometheus_url, model, [run.result.batch_date for run in runs]
    )
    logger.info(cleared)
    with tempfile.TemporaryDirectory(prefix="driftline-history-") as tmp:
        file = Path(tmp) / "history.om.txt"
        file.write_bytes(payload)
        blocks = history.create_blocks(file, data_dir)
    logger.info("history of %d day(s): %d TSDB block(s) in %s", len(runs), len(blocks), data_dir)
    return f"{len(blocks)} TSDB block(s) in {data_dir}"


def finish(
    model: str,
    start: date,
    end: date,
    outcomes: Sequence[DayOutcome],
    history_written: str | None,
    started: float,
) -> BackfillReport:
    """The report, with every failed day and its reason listed in the run's log."""
    report = BackfillReport(
        model=model,
        start=start,
        end=end,
        succeeded=tuple(o.batch_date for o in outcomes if o.result is not None),
        failed=tuple((o.batch_date, o.failure) for o in outcomes if o.failure is not None),
        history=history_written,
        duration_seconds=time.perf_counter() - started,
    )
    logger = get_run_logger()
    head, *rest = report.lines()
    (logger.warning if report.failed else logger.info)(head)
    for line in rest:
        logger.info(line.strip())
    return report


@task(name="publish-backfill-summary", cache_policy=NO_CACHE)
def publish_report(report: BackfillReport) -> None:
    create_markdown_artifact(
        key=artifact_key("backfill", report.model),
        markdown=summary_markdown(report),
        description=f"Backfill of {report.model}, {report.start} to {report.end}",
    )

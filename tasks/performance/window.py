"""Performance on labelled rows, per scored batch, as of a run day (docs/contract.md, "Statistics").

One engine serves the nightly run and the backfill. A `Window` holds the predictions and the label
arrivals that a range of run days needs, read once; `Window.performance(day)` gives the run for
`day` the performance of every batch of its window as that night saw it: labels arrived by the
day after (`as_of`), a row labelled twice keeping its latest arrival (then read order, a later
null label included), labels that match no batch of the window counted as unmatched. The nightly
run is a window of one run day.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import DriftlineError, InputError
from tasks.performance.classification import ClassificationMetrics, classification_metrics
from tasks.performance.estimate import PerformanceEstimate
from tasks.performance.window_pieces import LabelPiece, ScoredPiece, label_piece, scored_piece


@dataclass(frozen=True)
class RegressionMetrics:
    mae: float
    rmse: float
    mape: float  # a ratio, 0.12 = 12 %; rows whose target is 0 are left out
    r2: float


@dataclass(frozen=True)
class BatchPerformance:
    batch_date: date
    n_rows: int
    n_labelled: int
    label_coverage_ratio: float
    metrics: RegressionMetrics | ClassificationMetrics | None  # None when no row is labelled


@dataclass(frozen=True)
class PerformanceOutcome:
    batches: tuple[BatchPerformance, ...]  # every batch of the window with rows, oldest first
    unmatched_labels: int
    warnings: tuple[str, ...]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> RegressionMetrics:
    """MAE, RMSE, MAPE and R² as scikit-learn's metrics compute them, by the same numpy
    operations in the same order (tests hold them equal to the bit), without importing it.

    MAPE leaves out rows whose target is 0; R² of fewer than two rows is NaN, of a constant
    target 1 when the predictions are exact and 0 otherwise (scikit-learn's `force_finite`).
    """
    truth = np.asarray(y_true, dtype=np.float64).reshape(-1, 1)
    predicted = np.asarray(y_pred, dtype=np.float64).reshape(-1, 1)
    nonzero = truth[:, 0] != 0
    eps = np.finfo(np.float64).eps
    ratio = np.abs(predicted[nonzero] - truth[nonzero]) / np.maximum(np.abs(truth[nonzero]), eps)
    return RegressionMetrics(
        mae=float(np.average(np.abs(predicted - truth), axis=0)[0]),
        rmse=float(np.sqrt(np.average((truth - predicted) ** 2, axis=0))[0]),
        mape=float(np.average(ratio, axis=0)[0]) if nonzero.any() else math.nan,
        r2=_r2(truth, predicted) if truth.shape[0] >= 2 else math.nan,
    )


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    numerator = np.sum(1.0 * (truth - predicted) ** 2, axis=0)[0]
    denominator = np.sum(1.0 * (truth - np.average(truth, axis=0)) ** 2, axis=0)[0]
    if numerator == 0:
        return 1.0
    return 0.0 if denominator == 0 else float(1 - numerator / denominator)


def as_of(batch_date: date) -> date:
    """The nightly run for day D runs on D+1 and sees labels arrived up to then."""
    return batch_date + timedelta(days=1)


def window_start(batch_date: date, window_days: int) -> date:
    """The oldest batch whose performance the run for `batch_date` reports."""
    return batch_date - timedelta(days=window_days - 1)


@dataclass(frozen=True)
class _Batch:
    """One scored batch: predictions in file order and the label events for its rows."""

    predictions: np.ndarray  # float64, file order (a classifier's: class codes)
    arrivals: np.ndarray  # int64 ordinals of each label event, ascending (read order)
    rows: np.ndarray  # int64 row index in the batch of each label event
    targets: np.ndarray  # float64 label of each event (NaN: a null label); or class codes
    probabilities: np.ndarray | None = None  # a classifier's, rows x classes


class Window:
    """Predictions and labels of the windows of a range of run days, read once.

    Built by `Window.build`; a plain class rather than a dataclass so that Prefect does not walk
    its arrays when it is passed to mapped tasks.
    """

    def __init__(
        self,
        *,
        model: str,
        window_days: int,
        batches: dict[date, _Batch],
        label_arrivals: np.ndarray,
        label_codes: np.ndarray,
        label_batches: np.ndarray,
        scored_errors: Mapping[date, DriftlineError],
        label_errors: Mapping[date, DriftlineError],
        classes: Sequence[str] = (),
        estimates: Mapping[date, PerformanceEstimate] | None = None,
    ) -> None:
        self.model = model
        self.classes = tuple(classes)  # a classifier's: its metrics are classification metrics
        self.window_days = window_days
        self.batches = batches
        self.label_arrivals = label_arrivals  # every label event, in read order
        self.label_codes = label_codes  # a code per distinct row_id
        self.label_batches = label_batches  # ordinal of the row's batch, -1 when unknown
        self.scored_errors = dict(scored_errors)
        self.label_errors = dict(label_errors)
        # the estimates before labels that the batches' own nights made, where remembered
        self.estimates = dict(estimates or {})
        # per batch and set of arrivals: its performance, and its labelled rows with no prediction
        self._memo: dict[tuple[date, tuple[int, ...]], tuple[BatchPerformance, int]] = {}

    @classmethod
    def build(
        cls,
        *,
        model: str,
        window_days: int,
        target: str,
        scored: Sequence[tuple[date, pa.Table]],
        labels: Sequence[tuple[date, pa.Table]],
        scored_errors: Mapping[date, DriftlineError] | None = None,
        label_errors: Mapping[date, DriftlineError] | None = None,
        classes: Sequence[str] = (),
    ) -> Window:
        """From the scored batches (row_id, prediction) by batch day and the label files
        (row_id, target) by arrival day, each in ascending day order and read order. A
        classifier's (`classes`) batches also hold its `proba_<class>` columns."""
        return cls.from_pieces(
            model=model,
            window_days=window_days,
            scored=[(day, scored_piece(table, classes)) for day, table in scored],
            labels=[(day, label_piece(table, target, classes)) for day, table in labels],
            scored_errors=scored_errors,
            label_errors=label_errors,
            classes=classes,
        )

    @classmethod
    def from_pieces(
        cls,
        *,
        model: str,
        window_days: int,
        scored: Sequence[tuple[date, ScoredPiece]],
        labels: Sequence[tuple[date, LabelPiece]],
        scored_errors: Mapping[date, DriftlineError] | None = None,
        label_errors: Mapping[date, DriftlineError] | None = None,
        classes: Sequence[str] = (),
        estimates: Mapping[date, PerformanceEstimate] | None = None,
    ) -> Window:
        """As `build`, from what each file gave (tasks/performance/window_pieces.py), read now
        or remembered from an earlier night: the same pieces make the same window. `estimates`:
        the batches' estimates before labels that their own nights made, where known."""
        ids: list[pa.Array] = []  # row_ids of the scored rows, then of the label events
        predictions: dict[date, np.ndarray] = {}
        probabilities: dict[date, np.ndarray] = {}
        scored_batch: list[np.ndarray] = []
        for day, piece in scored:
            predictions[day] = piece.predictions
            if piece.probabilities is not None:
                probabilities[day] = piece.probabilities
            ids.append(piece.row_ids)
            scored_batch.append(np.full(len(piece.row_ids), day.toordinal(), dtype=np.int64))
        label_targets: list[np.ndarray] = []
        label_arrival: list[np.ndarray] = []
        for day, label in labels:
            ids.append(label.row_ids)
            label_targets.append(label.targets)
            label_arrival.append(np.full(len(label.row_ids), day.toordinal(), dtype=np.int64))

        # one hash pass gives every row_id an integer code; the rest is integer arithmetic
        all_ids, codes = _codes(ids)
        batch_of_row = np.concatenate([np.empty(0, np.int64), *scored_batch])
        repeated = _repeated_batches(model, all_ids, codes[: batch_of_row.size], batch_of_row)
        if repeated:  # left out, as a batch that cannot be read is: each fails its own run
            return cls.from_pieces(
                model=model,
                window_days=window_days,
                scored=[(day, piece) for day, piece in scored if day not in repeated],
                labels=labels,
                scored_errors={**(scored_errors or {}), **repeated},
                label_errors=label_errors,
                classes=classes,
                estimates=estimates,
            )
        scored_codes, label_codes = codes[: batch_of_row.size], codes[batch_of_row.size :]
        row_in_batch = np.concatenate(
            [np.empty(0, np.int64), *(np.arange(b.size, dtype=np.int64) for b in scored_batch)]
        )
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
            batches[day] = _Batch(
                preds, arrivals[events], label_rows[events], targets[events], probabilities.get(day)
            )
        return cls(
            model=model,
            window_days=window_days,
            batches=batches,
            label_arrivals=arrivals,
            label_codes=label_codes,
            label_batches=label_batches,
            scored_errors=scored_errors or {},
            label_errors=label_errors or {},
            classes=classes,
            estimates=estimates,
        )

    def performance(self, batch_date: date) -> PerformanceOutcome:
        """The performance the run for `batch_date` reports, or the error that run meets.

        A file that is bad input fails only the run that reads it first: the run of its own
        batch, or the run whose labels it is the newest of; later runs leave it out of their
        window and say so, once each.
        """
        first = window_start(batch_date, self.window_days)
        lo, hi = first.toordinal(), as_of(batch_date).toordinal()
        left_out: list[str] = []
        left_out_batches: list[date] = []
        for day, error in sorted(self.scored_errors.items()):
            if day == batch_date:
                raise error
            if first <= day < batch_date:
                left_out.append(f"batch {day} is left out of the performance window: {error}")
                left_out_batches.append(day)
        for day, error in sorted(self.label_errors.items()):
            if day.toordinal() == hi:
                raise error
            if lo < day.toordinal() < hi:
                left_out.append(f"labels of {day} are left out of the performance window: {error}")
        window = [d for d in sorted(self.batches) if first <= d <= batch_date]
        computed = [c for d in window if (c := self._batch(d, lo, hi)) is not None]
        batches = tuple(performance for performance, _ in computed)
        unpredicted = sum(n for _, n in computed)
        # the labels that arrived for this run (earlier arrivals were counted by earlier runs)
        # and match no row of its window: a label for an older batch is older than the window
        left, right = np.searchsorted(self.label_arrivals, [hi - 1, hi], side="right")
        found = self.label_batches[left:right]
        outside = (found < lo) | (found > batch_date.toordinal())
        unmatched = int(np.unique(self.label_codes[left:right][outside]).size)
        unattributed = 0
        if left_out_batches:
            # a batch left out of the window may hold these rows: not counted as unmatched
            unattributed, unmatched = unmatched, 0
        warnings = (
            tuple(left_out)
            + (
                (
                    f"{unmatched} label(s) that arrived on {as_of(batch_date)} match no scored row "
                    f"of the batches {first}..{batch_date} and were skipped",
                )
                if unmatched
                else ()
            )
            + (
                (
                    f"{unattributed} label(s) that arrived on {as_of(batch_date)} match no row of "
                    "the batches read and were skipped: the batch(es) left out of the window "
                    "(named above) may hold them",
                )
                if unattributed
                else ()
            )
            + (
                (
                    f"{unpredicted} labelled row(s) of the last batches have no prediction (null) "
                    "and were left out of the metrics",
                )
                if unpredicted
                else ()
            )
        )
        return PerformanceOutcome(batches, unmatched, warnings)

    def _batch(self, batch_date: date, lo: int, hi: int) -> tuple[BatchPerformance, int] | None:
        """Performance of one batch with the labels that arrived in (lo, hi] (ordinals), and how
        many of its labelled rows have no prediction (left out of the metrics).

        A batch whose labels stopped arriving keeps the same numbers for the rest of its window,
        so each is computed once per set of arrivals it has seen.
        """
        batch = self.batches[batch_date]
        n_rows = batch.predictions.size
        if n_rows == 0:
            return None  # no rows, nothing to report for the batch
        left, right = np.searchsorted(batch.arrivals, [lo, hi], side="right")
        key = (batch_date, tuple(np.unique(batch.arrivals[left:right]).tolist()))
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        rows = batch.rows[left:right]
        # the latest arrival of a row wins: its last event in read order
        unique_rows, last_from_end = np.unique(rows[::-1], return_index=True)
        targets = batch.targets[left:right][rows.size - 1 - last_from_end]
        predicted = batch.predictions[unique_rows]
        labelled = ~np.isnan(targets)
        # a row the model left unscored (null prediction) counts as labelled, but has no error
        scorable = labelled & ~np.isnan(predicted)
        proba = None
        if batch.probabilities is not None:
            proba = batch.probabilities[unique_rows]
            scorable &= ~np.isnan(proba).any(axis=1)
        n_labelled = int(labelled.sum())
        metrics: RegressionMetrics | ClassificationMetrics | None = None
        if scorable.any() and proba is not None:
            metrics = classification_metrics(
                targets[scorable], predicted[scorable], proba[scorable], self.classes
            )
        elif scorable.any():
            metrics = regression_metrics(targets[scorable], predicted[scorable])
        performance = BatchPerformance(
            batch_date=batch_date,
            n_rows=n_rows,
            n_labelled=n_labelled,
            label_coverage_ratio=n_labelled / n_rows,
            metrics=metrics,
        )
        self._memo[key] = (performance, n_labelled - int(scorable.sum()))
        return self._memo[key]


def _codes(ids: list[pa.Array]) -> tuple[pa.Array, np.ndarray]:
    """The distinct row_ids, and the index among them of every row_id in `ids`, in order."""
    if not ids:
        return pa.array([], pa.string()), np.empty(0, dtype=np.int64)
    encoded = pc.dictionary_encode(pa.chunked_array(ids, type=pa.string()).combine_chunks())
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return encoded.dictionary, codes


def _repeated_batches(
    model: str, distinct: pa.Array, codes: np.ndarray, batch_of_row: np.ndarray
) -> dict[date, DriftlineError]:
    """The batches that score a row_id an earlier batch scored, each with the error its own
    run meets (each batch's row_ids are unique: validation checks that when it is read)."""
    if codes.size == 0:
        return {}
    counts = np.bincount(codes)
    if counts.max() < 2:
        return {}
    first_batch = np.full(counts.size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_batch, codes, batch_of_row)
    later = np.flatnonzero(batch_of_row > first_batch[codes])  # rows an earlier batch scored
    errors: dict[date, DriftlineError] = {}
    for ordinal in np.unique(batch_of_row[later]):
        row = int(later[np.argmax(batch_of_row[later] == ordinal)])  # its first such row
        day, code = date.fromordinal(int(ordinal)), int(codes[row])
        errors[day] = InputError(
            f"batch {day}: row_id {distinct[code].as_py()!r} was already scored in batch "
            f"{date.fromordinal(int(first_batch[code]))} of model {model!r}; row_id must be "
            f"unique within a model: give the rows of {day} their own ids and write the batch "
            "again"
        )
    return errors

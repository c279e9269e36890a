"""A batch's data quality: every check of every feature and of the batch, in one outcome."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import pyarrow as pa

from tasks.quality.batch import duplicated_rows, repeated_rows, row_count, row_count_band
from tasks.quality.checks import (
    BATCH,
    BATCH_CHECKS,
    CATEGORICAL_CHECKS,
    NUMERIC_CHECKS,
    Check,
    Finding,
    QualityRules,
    categorical_findings,
    numeric_findings,
    swapped,
)
from tasks.quality.expectations import CategoricalExpectation, Expectations, NumericExpectation
from tasks.quality.facts import CategoricalFacts, ColumnFacts, NumericFacts

# a swapped column's own range, scale and categories are the other column's: said once, as a swap
_EXPLAINED_BY_SWAP = {"null_burst", "swapped_columns"}


@dataclass(frozen=True)
class QualityOutcome:
    """The findings, muted ones included and marked, and which checks ran on what."""

    findings: tuple[Finding, ...] = ()
    checked: Mapping[str, tuple[Check, ...]] = field(default_factory=dict)

    @property
    def issues(self) -> tuple[Finding, ...]:
        """The findings that count and alert: those the policy does not mute."""
        return tuple(f for f in self.findings if not f.muted)


@dataclass(frozen=True)
class BatchRows:
    """What the batch-wide checks read of the batch itself."""

    table: pa.Table  # the feature columns and the prediction
    scored_at: pa.ChunkedArray | None  # when present, repeated rows must share it too
    # per numeric column: its values that occur more than once, None where the drift step
    # did not sort the column (`find_repeated` finds them; tasks/quality/batch.py)
    ties: Mapping[str, np.ndarray | None] = field(default_factory=dict)
    # rows validation left out as whole copies of an earlier row, row_id included
    copies: int = 0
    # a numeric column's values occurring more than once (missing ones left out)
    find_repeated: Callable[[pa.ChunkedArray], np.ndarray] | None = None


def assess(
    expectations: Expectations,
    facts: Mapping[str, ColumnFacts],
    rows: BatchRows,
    *,
    batch_date: date,
    row_history: Mapping[date, int],
    mute: Mapping[str, Collection[str]] | None = None,
    rules: QualityRules | None = None,
) -> QualityOutcome:
    """Check each feature that has facts against its expectation, then the batch; findings of
    a (feature, check) in `mute` are kept and marked muted."""
    rules = rules or QualityRules()
    findings: list[Finding] = []
    checked: dict[str, tuple[Check, ...]] = {}
    for name, expected in expectations.features.items():
        column = facts.get(name)
        if isinstance(expected, NumericExpectation) and isinstance(column, NumericFacts):
            findings += numeric_findings(name, expected, column, rules)
            checked[name] = NUMERIC_CHECKS
        elif isinstance(expected, CategoricalExpectation) and isinstance(column, CategoricalFacts):
            findings += categorical_findings(name, expected, column, rules)
            checked[name] = CATEGORICAL_CHECKS
    pairs = swapped({n: expectations.features[n] for n in checked}, facts, rules)
    swapped_names = {f.feature for f in pairs}
    findings = [
        f for f in findings if f.feature not in swapped_names or f.check in _EXPLAINED_BY_SWAP
    ] + pairs
    findings += _batch_findings(expectations, rows, batch_date, row_history, rules)
    checked[BATCH] = BATCH_CHECKS
    muted = mute or {}
    return QualityOutcome(
        tuple(replace(f, muted=f.check in muted.get(f.feature, ())) for f in findings), checked
    )


def _batch_findings(
    expectations: Expectations,
    rows: BatchRows,
    batch_date: date,
    row_history: Mapping[date, int],
    rules: QualityRules,
) -> list[Finding]:
    table = rows.table
    by = "features and prediction"
    if rows.scored_at is not None:
        table = table.append_column("__scored_at", rows.scored_at)
        by = "features, prediction and scored_at"
    repeated = repeated_rows(table, rows.ties, rows.find_repeated) + rows.copies
    if rows.copies:
        by += f" ({rows.copies:,} with their row_id too, left out of the tests)"
    # scored_at, when present, tells a repeated event from two alike: none repeat by chance
    reference_share = None if rows.scored_at is not None else expectations.duplicate_share
    n_rows = table.num_rows + rows.copies
    found = [
        duplicated_rows(repeated, n_rows, reference_share, rules, by=by),
        row_count(table.num_rows, row_count_band(row_history, batch_date, rules)),
    ]
    return [f for f in found if f is not None]

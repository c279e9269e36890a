"""The checks of a whole batch: rows repeated within it, and its row count against the weekly
pattern of the earlier batches."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.quality.checks import BATCH, Finding, QualityRules, percent

WEEKDAYS = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def repeated_rows(
    table: pa.Table,
    ties: Mapping[str, np.ndarray | None],
    find_repeated: Callable[[pa.ChunkedArray], np.ndarray] | None = None,
) -> int:
    """Rows whose columns all equal those of an earlier row of the batch.

    A row can repeat another only where each of its values is one that occurs more than once
    in its column (or is missing). `ties` holds those values per numeric column the drift step
    sorted, and None for one it did not (a large column of many distinct values): there
    `find_repeated` finds them among the rows still in question (it returns a numeric column's
    values occurring more than once; without it such a column narrows nothing).
    The rows are narrowed column by column, a column known to repeat nothing first, then
    those still to search (a continuous one leaves no row), then the others by fewest ties,
    and only the rows left are grouped.
    """

    def order(name: str) -> float:
        tied = ties[name]
        return 0.5 if tied is None else tied.size

    for name in sorted(ties, key=order):
        if table.num_rows < 2:
            return 0
        tied = ties[name]
        if tied is None:
            if find_repeated is None:
                continue
            tied = find_repeated(table.column(name))
        table = table.filter(_tied(table.column(name), tied))
    if table.num_rows < 2:
        return 0
    groups = table.group_by(table.column_names).aggregate([])
    return table.num_rows - groups.num_rows


def _tied(values: pa.ChunkedArray, tied: np.ndarray) -> pa.ChunkedArray:
    """Rows whose value is among `tied` or missing. Adding 0.0 turns -0.0 into 0.0 on both
    sides, so a zero tied with either sign keeps every zero (the grouping then tells them)."""
    floats = pc.add(pc.cast(values, pa.float64()), 0.0)
    found = pc.is_in(floats, value_set=pa.array(np.asarray(tied, np.float64) + 0.0))
    return pc.fill_null(pc.or_kleene(found, pc.is_null(floats, nan_is_null=True)), True)


def duplicated_rows(
    repeated: int, n_rows: int, reference_share: float | None, rules: QualityRules, *, by: str
) -> Finding | None:
    """A batch whose rows repeat more often than the reference's did."""
    if n_rows == 0:
        return None
    share = repeated / n_rows
    limit = (reference_share or 0.0) + rules.duplicated_share
    if share <= limit:
        return None
    return Finding(
        BATCH,
        "duplicated_rows",
        share,
        f"at most {percent(limit)} of rows repeating an earlier one",
        f"{repeated:,} of {n_rows:,} rows repeat an earlier row's {by}",
    )


@dataclass(frozen=True)
class RowCountBand:
    """The row counts a day is expected within, and what it was learned from."""

    low: float
    high: float
    expected: float
    basis: str


def row_count_band(
    history: Mapping[date, int], day: date, rules: QualityRules
) -> RowCountBand | None:
    """The band for `day` from the earlier batches' row counts (empty ones left out): the
    median of the same weekday with a band from how far days stray from their weekday's median;
    before two weeks of batches, half the fewest to twice the most. None: too few batches."""
    earlier = {d: n for d, n in history.items() if d < day and n > 0}
    if len(earlier) < rules.row_count_min_days:
        return None
    if len(earlier) < rules.row_count_weekly_days:
        # the week's pattern is not known yet: any of the days seen, halved or doubled
        low, high = min(earlier.values()), max(earlier.values())
        return RowCountBand(
            low / rules.row_count_warmup_factor,
            high * rules.row_count_warmup_factor,
            statistics.median(earlier.values()),
            f"{len(earlier)} earlier batches (weekly pattern not learned yet)",
        )
    logs = {d: math.log(n) for d, n in earlier.items()}
    same = [v for d, v in logs.items() if d.weekday() == day.weekday()]
    center = statistics.median(same) if same else statistics.median(logs.values())
    residuals = []
    for d, v in logs.items():
        others = [w for e, w in logs.items() if e != d and e.weekday() == d.weekday()]
        if others:
            residuals.append(v - statistics.median(others))
    spread = 1.4826 * statistics.median([abs(r) for r in residuals]) if residuals else 0.0
    half = max(rules.row_count_z * spread, rules.row_count_min_band)
    basis = f"{WEEKDAYS[day.weekday()]} of the last {len(earlier)} batches ({len(same)} of them)"
    return RowCountBand(math.exp(center - half), math.exp(center + half), math.exp(center), basis)


def row_count(n_rows: int, band: RowCountBand | None) -> Finding | None:
    """A batch with rows outside its band (an empty one is MLBatchMissing's)."""
    if band is None or n_rows == 0 or band.low <= n_rows <= band.high:
        return None
    return Finding(
        BATCH,
        "row_count",
        float(n_rows),
        f"{band.low:,.0f} .. {band.high:,.0f} rows",
        f"{n_rows / band.expected:.0%} of the {band.expected:,.0f} expected from the {band.basis}",
    )

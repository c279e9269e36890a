"""What each column of a batch is expected to look like, learned once from the reference.

Plain numbers on plain arrays (no project types), so the reference profile that stores them
(tasks/stats/profile.py, tasks/edge/profile_file.py) and the checks that read them
(tasks/quality/checks.py) share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

# the range is the reference's 0.1% .. 99.9% quantiles widened by half their distance on each
# side, and at least its smallest and largest values widened by a tenth of it: a value the
# reference had, or a continuous value just past its largest, is inside; a unit change is not
RANGE_LEVELS = (0.001, 0.999)
RANGE_MARGIN = 0.5
EXTREMES_MARGIN = 0.1
# quantile levels the swap and scale checks compare (never the extremes: they are noisy)
SHAPE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class NumericExpectation:
    low: float  # values below `low` or above `high` are out of range
    high: float
    shape: tuple[float, ...]  # quantiles at SHAPE_LEVELS
    null_share: float
    top_share: float  # share of the most common present value (1.0: a constant column)
    outside_share: float  # the reference's own share outside low..high


@dataclass(frozen=True)
class CategoricalExpectation:
    shares: Mapping[str, float]  # of the present values
    null_share: float

    @property
    def top_share(self) -> float:
        return max(self.shares.values(), default=1.0)


ColumnExpectation = NumericExpectation | CategoricalExpectation


@dataclass(frozen=True)
class Expectations:
    """Every feature's expectation and the reference's share of repeated rows.

    `learned_from` is "reference" when fitted on the reference rows at registration, "profile"
    when derived later from a profile stored before these checks existed; the share of repeated
    rows is then unknown (None) and counted as 0.
    """

    features: Mapping[str, ColumnExpectation] = field(default_factory=dict)
    duplicate_share: float | None = None
    learned_from: Literal["reference", "profile"] = "reference"


def order_statistic(values: np.ndarray, counts_below: np.ndarray | None, level: float) -> float:
    """The order statistic at `level` of a sorted, distinct `values` with its counts below."""
    n = values.size if counts_below is None else int(counts_below[-1])
    position = round(level * (n - 1))
    if counts_below is None:
        return float(values[position])
    return float(values[int(np.searchsorted(counts_below, position, side="right")) - 1])


def learn_numeric(
    values: np.ndarray, counts_below: np.ndarray | None, n_missing: int
) -> NumericExpectation:
    """From a column's distinct present values (ascending) and how many lie below each
    (None: each occurs once), as the reference's ECDF holds them."""
    n = values.size if counts_below is None else int(counts_below[-1])
    total = n + n_missing
    null_share = n_missing / total if total else 0.0
    if n == 0:
        nan = math.nan
        return NumericExpectation(nan, nan, (nan,) * len(SHAPE_LEVELS), null_share, 1.0, 0.0)
    lo_q, hi_q = (order_statistic(values, counts_below, level) for level in RANGE_LEVELS)
    spread = hi_q - lo_q
    low = min(lo_q - RANGE_MARGIN * spread, float(values[0]) - EXTREMES_MARGIN * spread)
    high = max(hi_q + RANGE_MARGIN * spread, float(values[-1]) + EXTREMES_MARGIN * spread)
    runs = np.ones(values.size) if counts_below is None else np.diff(counts_below)
    below = int(np.searchsorted(values, low, side="left"))
    above = int(np.searchsorted(values, high, side="right"))
    outside = float(runs[:below].sum() + runs[above:].sum())
    return NumericExpectation(
        low=low,
        high=high,
        shape=tuple(order_statistic(values, counts_below, level) for level in SHAPE_LEVELS),
        null_share=null_share,
        top_share=float(runs.max()) / n,
        outside_share=outside / n,
    )


def learn_categorical(counts: Mapping[str, int], n_missing: int) -> CategoricalExpectation:
    n = sum(counts.values())
    total = n + n_missing
    return CategoricalExpectation(
        shares={k: v / n for k, v in counts.items()} if n else {},
        null_share=n_missing / total if total else 0.0,
    )


def duplicate_share(table: pa.Table, columns: Sequence[str]) -> float:
    """Share of rows whose `columns` all equal those of an earlier row."""
    if table.num_rows == 0 or not columns:
        return 0.0
    groups = table.select(list(columns)).group_by(list(columns)).aggregate([])
    return (table.num_rows - groups.num_rows) / table.num_rows


# --- the stored form (JSON inside the profile file) --------------------------------------------
def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def to_mapping(expectations: Expectations) -> dict[str, Any]:
    """Plain JSON values; the inverse of `from_mapping`."""
    features: dict[str, Any] = {}
    for name, e in expectations.features.items():
        if isinstance(e, NumericExpectation):
            raw = asdict(e)
            features[name] = {
                "kind": "numeric",
                **{k: _number(v) for k, v in raw.items() if k != "shape"},
                "shape": [_number(v) for v in e.shape],
            }
        else:
            features[name] = {"kind": "categorical", "null_share": e.null_share}
    return {"duplicate_share": expectations.duplicate_share, "features": features}


def from_mapping(
    raw: Mapping[str, Any], categories: Mapping[str, Mapping[str, int]]
) -> Expectations:
    """What `to_mapping` wrote; a categorical feature's shares come from its profile counts."""
    features: dict[str, ColumnExpectation] = {}
    for name, entry in raw["features"].items():
        if entry["kind"] == "numeric":
            features[name] = NumericExpectation(
                low=_float(entry["low"]),
                high=_float(entry["high"]),
                shape=tuple(_float(v) for v in entry["shape"]),
                null_share=float(entry["null_share"]),
                top_share=float(entry["top_share"]),
                outside_share=float(entry["outside_share"]),
            )
        else:
            counts = categories[name]
            n = sum(counts.values())
            features[name] = CategoricalExpectation(
                {k: v / n for k, v in counts.items()} if n else {}, float(entry["null_share"])
            )
    share = raw.get("duplicate_share")
    return Expectations(features, None if share is None else float(share), "reference")

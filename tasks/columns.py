"""Arrow columns to what the statistics take: float arrays with NaN, or category counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def as_float(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64; nulls become NaN (missing)."""
    floats = pc.cast(column, pa.float64())
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def as_categories(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A categorical column as strings; nulls and float NaN stay missing."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return pc.cast(column, pa.string())


def category_counts(column: pa.ChunkedArray | pa.Array) -> tuple[dict[str, int], int]:
    """Counts per category and the number of missing values."""
    strings = as_categories(column)
    counts = pc.value_counts(strings.drop_null())
    values = counts.field("values").to_pylist()
    tallies = counts.field("counts").to_pylist()
    return dict(zip(values, tallies, strict=True)), strings.null_count

"""Arrow columns to what the statistics take: float arrays with NaN, ECDFs, or category counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.stats.ecdf import Ecdf, ecdf_of_sorted, sort_floats


def as_float(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64; nulls become NaN (missing)."""
    floats = pc.cast(column, pa.float64())
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)


def repeated_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column's present values that occur more than once, ascending."""
    return numeric_ecdf(column)[0].repeated()


def numeric_ecdf(column: pa.ChunkedArray | pa.Array) -> tuple[Ecdf, int]:
    """The ECDF of a numeric column's present values and its number of missing ones."""
    ordered = sort_floats(as_float(column))
    # NaN sorts last and searchsorted agrees, so this finds the first NaN in O(log n)
    n_present = int(np.searchsorted(ordered, np.nan, side="left"))
    return ecdf_of_sorted(ordered[:n_present]), ordered.size - n_present


def as_categories(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A categorical column as strings; nulls and float NaN stay missing."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return pc.cast(column, pa.string())


def category_counts(column: pa.ChunkedArray | pa.Array) -> tuple[dict[str, int], int]:
    """Counts per category (keyed by its string form) and the number of missing values.

    Counting happens on the column's own type (integers, booleans; a dictionary column's codes,
    chunk by chunk, as each chunk has its own dictionary), and only the distinct values are
    turned into strings, so `1`, `1.0` and `"1"` are one category.
    """
    counts: dict[str, int] = {}
    missing = 0
    for keys, tallies in _tallies(column):
        for key, n in zip(as_categories(keys).to_pylist(), tallies.to_pylist(), strict=True):
            if key is None:
                missing += n
            else:
                counts[key] = counts.get(key, 0) + n
    return counts, missing


def _tallies(column: pa.ChunkedArray | pa.Array) -> list[tuple[pa.Array, pa.Array]]:
    """(distinct values, how often each occurs) of the column, or of each dictionary chunk."""
    if pa.types.is_dictionary(column.type):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        found = []
        for chunk in chunks:
            tallies = pc.value_counts(chunk.indices)
            # a missing code takes the dictionary's null
            found.append((chunk.dictionary.take(tallies.field("values")), tallies.field("counts")))
        return found
    tallies = pc.value_counts(column)
    return [(tallies.field("values"), tallies.field("counts"))]

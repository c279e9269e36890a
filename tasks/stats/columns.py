"""Arrow columns to what the statistics take: float arrays with NaN, ECDFs, or category counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.stats.ecdf import Ecdf, ecdf_of_sorted, sort_floats

# integer categories up to this (or up to the column's length) are counted by position
_CODES_MAX = 2**16


def as_float(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64; nulls become NaN (missing). Arrow fills them, so a column
    of one chunk is read without a copy either way (`to_numpy` would convert one with nulls
    through its pandas path)."""
    floats = pc.cast(column, pa.float64())
    if floats.null_count:
        floats = pc.fill_null(floats, np.nan)
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
    turned into strings, so `1`, `1.0` and `"1"` are one category. Dictionary codes and small
    non-negative integers are counted by position (`np.bincount`), other values hashed.
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
    """(distinct values, how often each occurs) of the column, or of each dictionary chunk;
    a missing value is counted under a null key."""
    if pa.types.is_dictionary(column.type):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        # a missing code takes the dictionary's null
        return [_code_tallies(chunk.indices, chunk.dictionary) for chunk in chunks]
    if pa.types.is_integer(column.type) and len(column) > 0:
        low, high = pc.min_max(column).values()
        if low.is_valid and low.as_py() >= 0 and high.as_py() < max(_CODES_MAX, len(column)):
            # small non-negative integers (codes, counts): counted as positions, not hashed
            return [_code_tallies(column, pa.array(np.arange(high.as_py() + 1), column.type))]
    tallies = pc.value_counts(column)
    return [(tallies.field("values"), tallies.field("counts"))]


def _code_tallies(codes: pa.ChunkedArray | pa.Array, values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The values that non-negative `codes` (< len(values)) point at, and how often each is
    pointed at; a missing code counts for a null value. One `np.bincount`."""
    size, missing = len(values), codes.null_count
    if missing:
        codes = pc.fill_null(codes, 0)  # fits any integer type; taken back below
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks() if codes.num_chunks != 1 else codes.chunk(0)
    found = np.bincount(codes.to_numpy(), minlength=size)
    counts = np.zeros(size + 1, dtype=np.int64)  # the last: the missing codes
    counts[: found.size] += found
    counts[0] -= missing
    counts[size] += missing
    present = np.flatnonzero(counts)
    keys = pa.concat_arrays([values, pa.nulls(1, values.type)]).take(pa.array(present))
    return keys, pa.array(counts[present], pa.int64())

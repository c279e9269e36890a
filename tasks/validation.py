"""Validation at the edge, once: a batch or label file against the model card.

Errors say what was expected, what came, and the fix, and name the file and column. Untidy but
usable data (extra columns, missing values) passes with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.errors import InputError
from model_registry.registry import ModelCard

ROW_ID = "row_id"
PREDICTION = "prediction"
OPTIONAL = ("scored_at", "model_version")


@dataclass(frozen=True)
class ValidatedBatch:
    table: pa.Table  # row_id, the features and prediction only
    warnings: tuple[str, ...]


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_categorical(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_categorical(t.value_type)
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
    )


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def _check_finite(table: pa.Table, column: str, source: str) -> None:
    values = pc.cast(table.column(column), pa.float64()).to_numpy(zero_copy_only=False)
    bad = np.isinf(values)
    if bad.any():
        row = (
            table.column(ROW_ID)[int(np.argmax(bad))].as_py()
            if ROW_ID in table.column_names
            else "?"
        )
        raise InputError(
            f"{source}: column {column!r} has {int(bad.sum())} infinite value(s) "
            f"(first at row_id {row!r}); expected finite numbers, or null for missing"
        )


def validate_batch(table: pa.Table, card: ModelCard, *, source: str) -> ValidatedBatch:
    """Check a scored batch against the card; returns only the columns the run uses."""
    found = table.column_names
    required = [ROW_ID, *card.feature_names, PREDICTION]
    for column in required:
        if column not in found:
            raise InputError(
                f"{source} lacks column {column!r} "
                f"(expected {_listing(required)}; found {_listing(found)})"
            )
    warnings = []
    extra = [c for c in found if c not in required and c not in OPTIONAL]
    if extra:
        warnings.append(f"{source}: ignoring extra column(s) {_listing(extra)}")
    for spec in card.features:
        t = table.schema.field(spec.name).type
        ok = _is_numeric(t) if spec.kind == "numeric" else _is_categorical(t)
        if not ok:
            expected = (
                "a numeric type (int or float)"
                if spec.kind == "numeric"
                else "string, dictionary, bool or integer categories"
            )
            raise InputError(
                f"{source}: column {spec.name!r} has type {t}, expected {expected} "
                f"for a {spec.kind} feature; cast it before writing the batch"
            )
        if spec.kind == "numeric":
            _check_finite(table, spec.name, source)
    if not _is_numeric(table.schema.field(PREDICTION).type):
        raise InputError(
            f"{source}: column 'prediction' has type {table.schema.field(PREDICTION).type}, "
            "expected float64"
        )
    _check_finite(table, PREDICTION, source)
    row_ids = table.column(ROW_ID)
    if row_ids.null_count:
        raise InputError(
            f"{source}: column 'row_id' has {row_ids.null_count} null(s); every row needs an id"
        )
    if pc.count_distinct(row_ids).as_py() != table.num_rows:
        counts = pc.value_counts(row_ids)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise InputError(
            f"{source}: column 'row_id' has duplicates (e.g. {dup!r}); "
            "row_id must be unique within a model"
        )
    nulls = [c for c in [*card.feature_names, PREDICTION] if table.column(c).null_count]
    if nulls:
        warnings.append(f"{source}: missing values in {_listing(nulls)} are left out of the tests")
    return ValidatedBatch(table.select(required), tuple(warnings))


def validate_labels(table: pa.Table, *, target: str, source: str) -> pa.Table:
    """A label file must carry row_id and a numeric target; returns just those two."""
    for column in (ROW_ID, target):
        if column not in table.column_names:
            raise InputError(
                f"{source} lacks column {column!r} "
                f"(expected row_id, {target}; found {_listing(table.column_names)})"
            )
    if not _is_numeric(table.schema.field(target).type):
        raise InputError(
            f"{source}: column {target!r} has type {table.schema.field(target).type}, "
            "expected a numeric target"
        )
    _check_finite(table, target, source)
    return table.select([ROW_ID, target])

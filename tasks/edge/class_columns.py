"""A classifier's columns at the edge: the predicted class, one probability per class, and the
true class of a label, each checked against the card's classes (in their string form,
tasks/performance/classification.py); probabilities as float64."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError
from data_lake.columns import PREDICTION
from tasks.performance.classification import proba_column, unseen_classes


def is_category_type(t: pa.DataType) -> bool:
    """A type a categorical feature may have: strings, booleans, integers, or their dictionary."""
    if pa.types.is_dictionary(t):
        return is_category_type(t.value_type)
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
    )


def _is_class_type(t: pa.DataType) -> bool:
    value = t.value_type if pa.types.is_dictionary(t) else t
    # floats too: integer classes with nulls, as pandas writes them
    return is_category_type(value) or pa.types.is_floating(value)


def probability_columns(classes: Sequence[str]) -> list[str]:
    return [proba_column(c) for c in classes]


def checked_classes(
    table: pa.Table, column: str, classes: Sequence[str], *, source: str
) -> pa.ChunkedArray:
    """The column as it came, once it holds only the model's classes (a type that holds no
    classes, or a class the model does not have, is bad input naming it). It is put in the
    classes' string form where it is counted or coded (tasks/performance/classification.py)."""
    found = table.schema.field(column).type
    if not _is_class_type(found):
        raise InputError(
            f"{source}: column {column!r} has type {found}, expected the class as a string, "
            "integer or boolean"
        )
    unseen = unseen_classes(table.column(column), classes)
    if unseen:
        shown = ", ".join(repr(c) for c in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        raise InputError(
            f"{source}: column {column!r} holds class(es) {shown} unseen in the model's "
            f"reference (classes: {', '.join(classes)}); register a model that knows them, or "
            "correct the values"
        )
    return table.column(column)


def checked_probabilities(
    table: pa.Table, classes: Sequence[str], *, source: str
) -> dict[str, pa.ChunkedArray]:
    """Each `proba_<class>` column as float64 in [0, 1] (nulls allowed: left out)."""
    out = {}
    for name in probability_columns(classes):
        found = table.schema.field(name).type
        if not (pa.types.is_floating(found) or pa.types.is_integer(found)):
            raise InputError(
                f"{source}: column {name!r} has type {found}, expected float64 probabilities"
            )
        floats = pc.cast(table.column(name), pa.float64())
        values = np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isnan(values) & ((values < 0) | (values > 1))
        if bad.any():
            raise InputError(
                f"{source}: column {name!r} has {int(bad.sum())} value(s) outside 0..1 (e.g. "
                f"{values[bad][0]!r}); expected the class probability, or null for missing"
            )
        out[name] = floats
    return out


def classifier_outputs(table: pa.Table, classes: Sequence[str], *, source: str) -> pa.Table:
    """`table` with its prediction as class strings and its probabilities as float64."""
    columns = {PREDICTION: checked_classes(table, PREDICTION, classes, source=source)}
    columns |= checked_probabilities(table, classes, source=source)
    for name, column in columns.items():
        table = table.set_column(table.column_names.index(name), name, column)
    return table

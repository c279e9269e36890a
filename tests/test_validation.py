"""Validation at the edge: each bad input names the file, the column or value, and the fix."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from core.errors import InputError
from tasks.edge.validation import validate_batch, validate_labels
from tests import builders

SOURCE = "batch 2026-03-02 (lake/scored/model=toy/batch_date=2026-03-02)"


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def test_clean_batch_keeps_only_the_columns_the_run_uses():
    validated = validate_batch(builders.batch(), builders.card(), source=SOURCE)
    assert validated.table.column_names == ["row_id", "carat", "depth", "cut", "prediction"]
    assert validated.warnings == ()


def test_missing_feature_column_names_it_with_expected_and_found():
    table = builders.batch().drop_columns(["carat"])
    with pytest.raises(InputError) as err:
        validate_batch(table, builders.card(), source=SOURCE)
    message = str(err.value)
    assert message.startswith(f"{SOURCE} lacks column 'carat'")
    assert "expected row_id, carat, depth, cut, prediction" in message
    assert "found row_id, depth, cut" in message


def test_text_in_a_numeric_feature_is_a_wrong_dtype():
    table = _replace(builders.batch(), "depth", pa.array(["60"] * 50))
    with pytest.raises(InputError, match=r"column 'depth' has type string, expected a numeric"):
        validate_batch(table, builders.card(), source=SOURCE)


def test_nested_values_in_a_categorical_feature_are_a_wrong_dtype():
    table = _replace(builders.batch(), "cut", pa.array([[1, 2]] * 50))
    with pytest.raises(InputError, match=r"column 'cut' has type list<item: int64>"):
        validate_batch(table, builders.card(), source=SOURCE)


@pytest.mark.parametrize("column", ["carat", "prediction"])
def test_infinity_in_a_numeric_column_or_the_prediction_is_refused(column):
    values = np.ones(50)
    values[7] = -np.inf
    table = _replace(builders.batch(), column, pa.array(values))
    with pytest.raises(InputError) as err:
        validate_batch(table, builders.card(), source=SOURCE)
    assert f"column '{column}' has 1 infinite value(s) (first at row_id '2026-03-02-7')" in str(
        err.value
    )


def test_duplicate_row_ids_are_refused_naming_one():
    table = builders.batch()
    ids = table.column("row_id").to_pylist()
    ids[3] = ids[1]
    table = _replace(table, "row_id", pa.array(ids))
    with pytest.raises(InputError, match=r"'row_id' has duplicates \(e.g. '2026-03-02-1'\)"):
        validate_batch(table, builders.card(), source=SOURCE)


def test_rows_copied_whole_are_left_out_and_counted_not_refused():
    table = builders.batch()
    twice = pa.concat_tables([table, table.slice(10, 5), table.slice(2, 1)])
    validated = validate_batch(twice, builders.card(), source=SOURCE)
    assert validated.repeated_copies == 6
    assert validated.table.column("row_id").to_pylist() == table.column("row_id").to_pylist()
    assert any("6 row(s) repeat an earlier row whole" in w for w in validated.warnings)


def test_extra_columns_are_ignored_with_a_warning():
    table = builders.batch().append_column("debug_score", pa.array(np.zeros(50)))
    validated = validate_batch(table, builders.card(), source=SOURCE)
    assert "debug_score" not in validated.table.column_names
    assert validated.warnings == (f"{SOURCE}: ignoring extra column(s) debug_score",)


def test_nan_and_null_are_missing_values_not_errors():
    values = pa.array([None, *([1.0] * 48), float("nan")], type=pa.float64())
    table = _replace(builders.batch(), "carat", values)
    validated = validate_batch(table, builders.card(), source=SOURCE)
    assert validated.table.num_rows == 50
    assert any("missing values in carat" in w for w in validated.warnings)


def test_integer_and_dictionary_columns_are_accepted():
    table = builders.batch()
    table = _replace(table, "depth", pa.array(np.arange(50), type=pa.int32()))
    table = _replace(table, "cut", table.column("cut").dictionary_encode())
    assert validate_batch(table, builders.card(), source=SOURCE).table.num_rows == 50


def test_label_file_without_the_target_column_names_the_file():
    labels = pa.table({"row_id": ["a"], "cost": [1.0]})
    with pytest.raises(InputError) as err:
        validate_labels(labels, target="price", source="lake/labels/x.parquet")
    assert str(err.value) == (
        "lake/labels/x.parquet lacks column 'price' (expected row_id, price; found row_id, cost)"
    )

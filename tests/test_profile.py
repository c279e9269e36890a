"""The reference profile: fitted at registration, stored hash-checked, rebuilt for old versions."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InputError
from model_registry.registry import FeatureSpec, HoldoutMetrics, ModelCard, Registry
from tasks.edge.profile_file import (
    PROFILE_FILE,
    load_profile,
    profile_files,
    profile_from_bytes,
    profile_to_bytes,
)
from tasks.stats.buckets import BUCKETS, NAN_BUCKET, ReferenceBuckets
from tasks.stats.columns import as_float, category_counts, numeric_ecdf
from tasks.stats.profile import NumericProfile, ReferenceProfile, build_profile
from tests.builders import batch, card


def reference_table(rows: int = 400) -> pa.Table:
    table = batch(rows, seed=5, target="price")
    # ties, missing values and a vanished category make the round trip worth checking
    carat = np.round(table.column("carat").to_numpy(), 1)
    carat_with_nulls = pa.array(carat, mask=np.arange(rows) % 50 == 0)
    table = table.set_column(table.schema.get_field_index("carat"), "carat", carat_with_nulls)
    return table


def assert_same(a: ReferenceProfile, b: ReferenceProfile) -> None:
    assert a.n_rows == b.n_rows
    assert a.features.keys() == b.features.keys()
    for name, feature in [*a.features.items(), ("prediction", a.prediction)]:
        other = b.features.get(name, b.prediction)
        assert feature.n_missing == other.n_missing
        if isinstance(feature, NumericProfile):
            assert isinstance(other, NumericProfile)
            np.testing.assert_array_equal(feature.ecdf.values, other.ecdf.values)
            np.testing.assert_array_equal(feature.ecdf.below_all(), other.ecdf.below_all())
        else:
            assert feature.counts == other.counts


def register(root: Path, reference: pa.Table, *, with_profile: bool) -> tuple[Registry, ModelCard]:
    registry = Registry.open(str(root))
    sink = io.BytesIO()
    pq.write_table(reference, sink)
    features = card().features
    extra = profile_files(reference, card()) if with_profile else None
    registered = registry.register(
        model="toy",
        estimator_bytes=b"not used by monitoring",
        reference_bytes=sink.getvalue(),
        target="price",
        features=features,
        metrics=HoldoutMetrics(mae=1.0, rmse=1.0, mape=0.1, r2=0.9),
        libraries={},
        extra_files=extra,
    )
    return registry, registered


def test_profile_holds_sorted_reference_values_counts_and_missing():
    reference = reference_table()
    profile = build_profile(reference, card())
    carat = profile.features["carat"]
    assert isinstance(carat, NumericProfile)
    present = reference.column("carat").drop_null().to_numpy()
    np.testing.assert_array_equal(carat.values_sorted, np.sort(present))
    assert carat.n_missing == reference.column("carat").null_count
    assert sum(profile.features["cut"].counts.values()) == reference.num_rows
    assert profile.prediction.ecdf.n == reference.num_rows
    assert profile.n_rows == reference.num_rows


def test_profile_survives_the_round_trip_through_its_file():
    profile = build_profile(reference_table(), card())
    assert_same(profile_from_bytes(profile_to_bytes(profile), source="p"), profile)


def test_loaded_profile_keeps_no_view_of_the_file_and_no_counts_for_distinct_values():
    payload = profile_to_bytes(build_profile(reference_table(), card()))
    profile = profile_from_bytes(payload, source="p")
    file_bytes = np.frombuffer(payload, dtype=np.uint8)
    numeric = [
        f for f in [*profile.features.values(), profile.prediction] if isinstance(f, NumericProfile)
    ]
    for feature in numeric:
        assert not np.shares_memory(feature.ecdf.values, file_bytes)
    assert profile.prediction.ecdf.counts_below is None  # continuous: 0, 1, 2, ... not kept
    carat = profile.features["carat"]
    assert isinstance(carat, NumericProfile)
    assert carat.ecdf.counts_below is not None  # rounded: ties
    assert not np.shares_memory(carat.ecdf.counts_below, file_bytes)


def test_profile_files_need_only_the_reference_and_the_feature_specs():
    @dataclass(frozen=True)
    class Specs:  # what commands know before the card exists
        features: tuple[FeatureSpec, ...]

    files = profile_files(reference_table(), Specs(card().features))
    assert list(files) == [PROFILE_FILE]
    stored = profile_from_bytes(files[PROFILE_FILE], source="p")
    assert_same(stored, build_profile(reference_table(), card()))


def test_a_file_that_is_not_a_profile_is_refused_with_its_name():
    with pytest.raises(InputError, match=r"toy v1 profile\.arrow: not a valid"):
        profile_from_bytes(b"garbage", source="toy v1 profile.arrow")


def test_registered_profile_is_loaded_and_hash_checked(tmp_path):
    registry, registered = register(tmp_path, reference_table(), with_profile=True)
    assert PROFILE_FILE in registered.sha256
    assert_same(load_profile(registry, registered), build_profile(reference_table(), card()))
    (tmp_path / "toy" / "v1" / PROFILE_FILE).write_bytes(
        profile_to_bytes(build_profile(reference_table(50), card()))
    )
    with pytest.raises(InputError, match="does not match its card"):
        load_profile(registry, registered)


def test_old_version_gets_a_profile_built_once_and_cached_outside_its_directory(tmp_path):
    registry, registered = register(tmp_path, reference_table(), with_profile=False)
    version_files = sorted(p.name for p in (tmp_path / "toy" / "v1").iterdir())
    first = load_profile(registry, registered)
    cached = list((tmp_path / ".cache" / "profiles").glob("*.arrow"))
    assert len(cached) == 1
    assert sorted(p.name for p in (tmp_path / "toy" / "v1").iterdir()) == version_files
    # the second run reads the cache: the reference itself is no longer needed
    (tmp_path / "toy" / "v1" / "reference.parquet").unlink()
    assert_same(load_profile(registry, registered), first)
    assert registry.models() == ["toy"]


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    registry, registered = register(tmp_path, reference_table(), with_profile=False)
    load_profile(registry, registered)
    [cached] = (tmp_path / ".cache" / "profiles").glob("*.arrow")
    cached.write_bytes(b"truncated")
    assert_same(load_profile(registry, registered), build_profile(reference_table(), card()))


def test_numeric_ecdf_reads_nulls_and_nan_as_missing():
    ecdf, missing = numeric_ecdf(pa.chunked_array([[3.0, None], [float("nan"), 1, 3]]))
    assert missing == 2
    assert ecdf.sorted_values().tolist() == [1.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.chunked_array([[1.5, None], [None, 4.0]]), [1.5, None, None, 4.0]),
        (pa.chunked_array([pa.array([1, None, 3], pa.int16())]), [1.0, None, 3.0]),
        (pa.array([None, None], pa.float32()), [None, None]),
        (pa.array([2.5, float("nan")]), [2.5, None]),
        (pa.chunked_array([], pa.float64()), []),
    ],
)
def test_a_numeric_column_reads_as_float64_with_nan_for_its_nulls(column, expected):
    values = as_float(column)
    assert values.dtype == np.float64
    assert [None if np.isnan(v) else v for v in values.tolist()] == expected


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([True, False, True, None]), ({"true": 2, "false": 1}, 1)),
        (pa.array([1, 2, 2, None]), ({"1": 1, "2": 2}, 1)),
        (pa.array([1.0, 2.0, 2.0, float("nan")]), ({"1": 1, "2": 2}, 1)),
        (pa.array(["b", "a", "b"]).dictionary_encode(), ({"a": 1, "b": 2}, 0)),
        (
            pa.chunked_array(
                [pa.array(["a"]).dictionary_encode(), pa.array(["b", "a"]).dictionary_encode()]
            ),
            ({"a": 2, "b": 1}, 0),
        ),
        (  # a missing code, a dictionary holding null, a float dictionary with NaN
            pa.chunked_array(
                [
                    pa.DictionaryArray.from_arrays(
                        pa.array([0, None, 1, 0], pa.int32()), pa.array(["x", None])
                    ),
                    pa.array(["x", "y", None]).dictionary_encode(),
                ]
            ),
            ({"x": 3, "y": 1}, 3),
        ),
        (
            pa.DictionaryArray.from_arrays(
                pa.array([0, 1, 1, 2]), pa.array([1.0, float("nan"), 2])
            ),
            ({"1": 1, "2": 1}, 2),
        ),
    ],
)
def test_categories_of_any_type_are_counted_by_their_string_form(column, expected):
    assert category_counts(column) == expected


_INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32()]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.lists(st.one_of(st.none(), st.integers(-3, 127)), max_size=40), min_size=1, max_size=3
    ),
    type_index=st.integers(0, len(_INT_TYPES) - 1),
    dictionary=st.booleans(),
)
def test_integer_and_dictionary_counts_match_counting_each_value(chunks, type_index, dictionary):
    """Small non-negative integers and dictionary codes are counted by position (`np.bincount`),
    the rest hashed: either way each value's string form once, missing values apart."""
    kind = _INT_TYPES[type_index]
    if kind.id in (pa.uint8().id, pa.uint32().id):
        chunks = [[v if v is None else abs(v) for v in c] for c in chunks]
    column = pa.chunked_array([pa.array(c, kind) for c in chunks], kind)
    if dictionary:
        column = pa.chunked_array(
            [c.dictionary_encode() for c in column.chunks], pa.dictionary(pa.int32(), kind)
        )
    values = [v for c in chunks for v in c]
    expected: dict[str, int] = {}
    for v in values:
        if v is not None:
            expected[str(v)] = expected.get(str(v), 0) + 1
    assert category_counts(column) == (expected, values.count(None))


def large_reference() -> pa.Table:
    """A reference large enough for its numeric columns to keep their buckets."""
    table = batch(70_000, seed=9, target="price")
    carat = np.round(table.column("carat").to_numpy(), 1)  # few distinct values: no buckets
    return table.set_column(table.schema.get_field_index("carat"), "carat", pa.array(carat))


def test_a_large_reference_keeps_its_buckets_exactly_through_its_file():
    profile = build_profile(large_reference(), card())
    prediction = profile.prediction
    assert isinstance(prediction, NumericProfile) and prediction.buckets is not None
    carat = profile.features["carat"]
    assert isinstance(carat, NumericProfile) and carat.buckets is None, "few distinct values"
    keys = prediction.buckets.bucketing.keys(prediction.values_sorted)
    np.testing.assert_array_equal(
        np.diff(prediction.buckets.starts), np.bincount(keys, minlength=BUCKETS)
    )
    read = profile_from_bytes(profile_to_bytes(profile), source="p").prediction
    assert isinstance(read, NumericProfile) and read.buckets is not None
    assert read.buckets.bucketing == prediction.buckets.bucketing
    np.testing.assert_array_equal(read.buckets.starts, prediction.buckets.starts)


@pytest.mark.parametrize(
    "moved",
    [
        "the top values counted in the NaN bucket",  # the key map of an earlier version
        "a start a few values off",
    ],
)
def test_buckets_that_map_values_otherwise_than_this_version_are_refused(moved: str) -> None:
    """Counts that add up but disagree with where this version's buckets put the reference's
    values would give a wrong D: the file is refused, naming it."""
    profile = build_profile(large_reference(), card())
    prediction = profile.prediction
    assert isinstance(prediction, NumericProfile) and prediction.buckets is not None
    starts = prediction.buckets.starts.copy()
    if moved == "a start a few values off":
        # the first of the checked buckets (every 4,096th) that holds values: its start moved
        # past them, still in order
        b = next(b for b in range(4096, BUCKETS, 4096) if starts[b + 1] > starts[b])
        starts[b] = starts[b + 1]
    else:
        starts[NAN_BUCKET] -= 50
    broken = ReferenceBuckets(prediction.buckets.bucketing, starts)
    damaged = replace(profile, prediction=replace(prediction, buckets=broken))
    with pytest.raises(InputError, match=r"p: not a valid.*do not match the reference's values"):
        profile_from_bytes(profile_to_bytes(damaged), source="p")


def test_buckets_that_do_not_add_up_are_refused_and_a_format_3_file_reads_without_them():
    profile = build_profile(large_reference(), card())
    prediction = profile.prediction
    assert isinstance(prediction, NumericProfile) and prediction.buckets is not None
    starts = prediction.buckets.starts.copy()
    starts[30_000:30_100] = starts[40_000]  # counts that run backwards
    broken = ReferenceBuckets(prediction.buckets.bucketing, starts)
    damaged = replace(profile, prediction=replace(prediction, buckets=broken))
    with pytest.raises(InputError, match=r"p: not a valid.*do not add up"):
        profile_from_bytes(profile_to_bytes(damaged), source="p")
    bare = {
        name: replace(f, buckets=None) if isinstance(f, NumericProfile) else f
        for name, f in profile.features.items()
    }
    old = replace(profile, features=bare, prediction=replace(prediction, buckets=None))
    payload = profile_to_bytes(old)
    table = pa.ipc.open_file(pa.py_buffer(payload)).read_all()
    meta = json.loads(table.schema.metadata[b"driftline.profile"])
    assert all("buckets" not in entry for entry in meta["features"].values())
    meta["format"] = 3
    sink = pa.BufferOutputStream()
    table = table.replace_schema_metadata({b"driftline.profile": json.dumps(meta).encode()})
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    read = profile_from_bytes(sink.getvalue().to_pybytes(), source="p")
    assert_same(read, profile)
    assert isinstance(read.prediction, NumericProfile) and read.prediction.buckets is None

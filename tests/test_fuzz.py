"""Property tests: malformed batches, Parquet bytes and names never crash validation or the metric
export. 4,000 + 3,000 + 3,000 generated cases on tiny tables; each either passes or ends in
driftline's `InputError`, and every exported label value reads back as it was written.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import InputError
from data_lake.storage import Storage
from model_registry.registry import HoldoutMetrics
from tasks.edge.validation import ValidatedBatch, validate_batch
from tasks.export import catalogue as metrics
from tasks.results.day import MonitoringResult
from tasks.stats.drift import FeatureDrift
from tests import builders

# hypothesis runs each property over many generated inputs: ~45 s on 2 cores
pytestmark = pytest.mark.slow


def fast(examples: int) -> settings:
    """Many cheap examples, reproducible, with no timing in the verdict."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


CARD = builders.card()
NAMES = ["row_id", "carat", "depth", "cut", "prediction", "model_version", "extra", "carat "]

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)

# Values chosen to hit edges; a seeded generator picks among them, so one example costs a few
# draws (the rows come from the seed), which keeps 10,000 cases well under a minute.
EDGE_FLOATS = [0.0, -0.0, 1.5, -3.25, math.nan, math.inf, -math.inf, 1e308, 5e-324, None]
EDGE_INTS = [0, -1, 7, 2**53 + 1, 2**63 - 1, -(2**63), None]
EDGE_TEXT = ["", "a", "b", "é", "\n", '"', "\\", "\x00", "🎉", "a" * 40, "}", None]


def _values(pool: list, rows: int, rng: random.Random) -> list:
    return [rng.choice(pool) for _ in range(rows)]


KINDS: dict[str, Callable[[int, random.Random], pa.Array]] = {
    "float64": lambda n, r: pa.array(_values(EDGE_FLOATS, n, r), pa.float64()),
    "float32": lambda n, r: pa.array(_values(EDGE_FLOATS[:5], n, r), pa.float32()),
    "float16": lambda n, r: pa.array(np.array(_values([0.5, 2.0, np.nan], n, r), np.float16)),
    "int64": lambda n, r: pa.array(_values(EDGE_INTS, n, r), pa.int64()),
    "uint8": lambda n, r: pa.array(_values([0, 255, None], n, r), pa.uint8()),
    "decimal": lambda n, r: pa.array(_values([Decimal("1.5"), None], n, r), pa.decimal128(5, 2)),
    "string": lambda n, r: pa.array(_values(EDGE_TEXT, n, r), pa.string()),
    "large_string": lambda n, r: pa.array(_values(EDGE_TEXT, n, r), pa.large_string()),
    "dictionary": lambda n, r: pa.array(_values(EDGE_TEXT, n, r)).dictionary_encode(),
    "bool": lambda n, r: pa.array(_values([True, False, None], n, r), pa.bool_()),
    "list": lambda n, r: pa.array([[r.choice(EDGE_FLOATS)] for _ in range(n)]),
    "struct": lambda n, r: pa.array([{"a": r.choice(EDGE_TEXT)} for _ in range(n)]),
    "map": lambda n, r: pa.array([[("k", 1)]] * n, pa.map_(pa.string(), pa.int64())),
    "binary": lambda n, r: pa.array(_values([b"", b"\xff", None], n, r), pa.binary()),
    "null": lambda n, r: pa.nulls(n),
    "date": lambda n, r: pa.array(_values([date(2026, 3, 2), None], n, r), pa.date32()),
    "timestamp": lambda n, r: pa.array(_values([0, None], n, r), pa.timestamp("us", "UTC")),
}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(0, 4))
    rng = draw(st.randoms(use_true_random=False))
    names = draw(st.lists(st.sampled_from(NAMES), max_size=4))
    if draw(st.booleans()):  # most cases keep the required columns, so checks go deep
        names = ["row_id", "carat", "depth", "cut", "prediction", *names]
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=len(names),
                          max_size=len(names)))  # fmt: skip
    return pa.Table.from_arrays([KINDS[k](rows, rng) for k in kinds], names=names)


def validate(table: pa.Table) -> ValidatedBatch | None:
    try:
        return validate_batch(table, CARD, source="batch 2026-03-02")
    except InputError as error:
        message = str(error)
        assert message.startswith("batch 2026-03-02") and "\n" not in message.strip()
        return None


@fast(4000)
@given(tables())
def test_validation_accepts_or_names_the_problem(table: pa.Table) -> None:
    batch = validate(table)
    if batch is not None:
        assert batch.table.column_names == ["row_id", "carat", "depth", "cut", "prediction"]


SCRATCH = Path(tempfile.mkdtemp(prefix="driftline-fuzz-"))
STORAGE = Storage.from_uri(str(SCRATCH))


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as a Parquet file; empty when pyarrow cannot write it (a dictionary of nulls)."""
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table, sink)
    except pa.ArrowNotImplementedError:
        return b""
    return sink.getvalue().to_pybytes()


@st.composite
def damaged_parquet(draw: st.DrawFn) -> bytes:
    payload = bytearray(parquet_bytes(draw(tables())))
    damage = draw(st.sampled_from(["none", "truncate", "flip", "splice", "garbage"]))
    if damage == "truncate":
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 8))):
            if payload:
                i = draw(st.integers(0, len(payload) - 1))
                payload[i] ^= draw(st.integers(1, 255))
    elif damage == "splice":
        i = draw(st.integers(0, len(payload)))
        payload[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif damage == "garbage":
        payload = bytearray(draw(st.binary(max_size=64)))
    return bytes(payload)


@fast(3000)
@given(damaged_parquet())
def test_damaged_parquet_is_read_or_refused_naming_the_file(payload: bytes) -> None:
    path = SCRATCH / "part-0.parquet"
    path.write_bytes(payload)
    try:
        table = STORAGE.read_parquet(str(path))
    except InputError as error:
        assert str(error).startswith(f"{path}: not a readable Parquet file")
        return
    validate(table)


label_text = st.text(max_size=8)  # any unicode a card can hold (surrogates are refused there)


@st.composite
def results(draw: st.DrawFn) -> MonitoringResult:
    names = draw(st.lists(label_text, max_size=6, unique=True))
    features = tuple(
        FeatureDrift(
            feature=name,
            test=draw(st.sampled_from(["ks", "chi2"])),
            score=draw(floats),
            p_value=draw(floats),
            n_reference=10,
            n_current=draw(st.integers(0, 10)),
            missing_ratio=draw(floats),
            status=draw(st.sampled_from(["ok", "insufficient_data"])),
            p_value_adjusted=draw(floats),
            is_drifted=draw(st.booleans()),
        )
        for name in names
    )
    return MonitoringResult(
        model=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
        model_version=draw(label_text),
        batch_date=draw(st.dates(date(1970, 1, 2), date(9998, 12, 31))),
        as_of=date(2026, 3, 3),
        n_rows=draw(st.integers(0, 10**12)),
        features=features,
        prediction=None,
        performance=(),
        baseline=HoldoutMetrics(draw(floats), draw(floats), draw(floats), draw(floats)),
        min_label_coverage=0.8,
        unmatched_labels=0,
        warnings=(),
    )


@fast(3000)
@given(results())
def test_any_names_and_values_export_and_read_back(result: MonitoringResult) -> None:
    run = metrics.RunStamp(finished_at_seconds=1.0, duration_seconds=2.0)
    text = generate_latest(metrics.registry_for(metrics.metric_families(result, run))).decode()
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    for sample in (s for family in parsed.values() for s in family.samples):
        assert sample.labels["model_version"] == result.model_version
        assert not math.isnan(sample.value), "NaN is left out, never exported"
    if result.n_rows:
        detected = parsed["ml_feature_drift_detected"].samples if result.features else []
        assert [s.labels["feature"] for s in detected] == [d.feature for d in result.features]

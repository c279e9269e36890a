"""Hostile and odd input: names that try to break the exposition format, too many categories, a
0-row reference, nested Parquet types, dates outside any batch. Clear errors, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import urllib.request
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import InputError
from core.settings import DriftRule
from model_registry.registry import ModelCard
from tasks.edge.validation import OTHER_CATEGORY, cap_categories, validate_batch
from tasks.export import catalogue as metrics
from tasks.export import pushgateway
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import build_profile
from tests import builders
from tests.procs import wait_for
from tests.stack_fixtures import LiveStack, prom_label_values

HOSTILE_NAMES = [
    'quote"d',
    "new\nline",
    "back\\slash",
    "brace}{",
    'x"} 1\nml_batch_rows{model="evil"} 666\n#',  # tries to end the sample and add one
    "# HELP ml_batch_rows fake",
    "ünïcödé ✓ 特徴 🎉",
    "a=b,c",
    " leading and trailing ",
    "tab\there",
]


def hostile_result(model: str) -> object:
    base = builders.result()
    renamed = tuple(
        dataclasses.replace(d, feature=HOSTILE_NAMES[i % len(HOSTILE_NAMES)] + f" #{i}")
        for i, d in enumerate(base.features * 4)
    )
    return dataclasses.replace(base, model=model, features=renamed)


@pytest.mark.e2e
def test_hostile_feature_names_round_trip_through_a_real_pushgateway_and_prometheus(
    live_stack: LiveStack,
) -> None:
    model = "hostile-names"
    result = hostile_result(model)
    names = {d.feature for d in result.features}
    pushgateway.push(result, metrics.RunStamp(1.0, 2.0), gateway=live_stack.pushgateway_url)
    with urllib.request.urlopen(f"{live_stack.pushgateway_url}/metrics", timeout=10) as response:
        exposition = response.read().decode()

    checked = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    seen = {
        sample.labels["feature"]
        for family in text_string_to_metric_families(exposition)
        if family.name == "ml_feature_drift_detected"
        for sample in family.samples
        if sample.labels.get("model") == model
    }
    assert seen == names
    injected = [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.labels.get("model") == "evil" or sample.value == 666
    ]
    assert injected == [], "a name ended its sample and added one of its own"

    def scraped() -> set[str] | None:
        values = set(
            prom_label_values(
                live_stack.prometheus_url,
                "feature",
                f'ml_feature_drift_detected{{model="{model}"}}',
            )
        )
        return values if values == names else None

    wait_for(scraped, timeout_seconds=60, what="Prometheus to scrape every hostile name")


@pytest.mark.parametrize(
    "feature, problem",
    [
        ("", "is not a non-empty UTF-8 string"),
        ("\ud800", "is not a non-empty UTF-8 string"),
    ],
)
def test_a_card_with_an_unusable_feature_name_is_refused(feature: str, problem: str) -> None:
    card = json.loads(builders.card().to_json())
    card["features"][0]["name"] = feature
    with pytest.raises(InputError, match=problem):
        ModelCard.from_json(json.dumps(card), source="card.json")


def test_a_card_listing_a_feature_twice_is_refused() -> None:
    card = json.loads(builders.card().to_json())
    card["features"].append(card["features"][0])
    with pytest.raises(InputError, match="feature 'carat' is listed twice"):
        ModelCard.from_json(json.dumps(card), source="card.json")


# --- categories ---------------------------------------------------------------------------------


def with_cut(table: pa.Table, values: list[str]) -> pa.Table:
    return table.set_column(table.column_names.index("cut"), "cut", pa.array(values))


def test_too_many_categories_are_capped_with_a_warning_and_the_same_score() -> None:
    card = builders.card()
    profile = build_profile(builders.batch(500, seed=9, target="price"), card)
    rows = 400
    values = [("a", "b", "c")[i % 3] if i % 2 else f"new-{i}" for i in range(rows)]
    raw = with_cut(builders.batch(rows), values)
    capped, warnings = cap_categories(raw, card, source="batch x", max_categories=10)
    (warning,) = warnings
    assert "column 'cut' has 203 distinct values, more than the cap of 10" in warning
    assert repr(OTHER_CATEGORY) in warning
    assert set(capped.column("cut").to_pylist()) == {"a", "b", "c", OTHER_CATEGORY}
    before = drift_report(profile, raw, DriftRule()).features[2]
    after = drift_report(profile, capped, DriftRule()).features[2]
    assert after.score == pytest.approx(before.score, abs=1e-12)  # TVD is unchanged
    assert after.n_current == before.n_current


@pytest.mark.slow
def test_a_million_distinct_categories_run_in_bounded_memory() -> None:
    """In a fresh interpreter, so the peak resident size is this case's alone."""
    script = """
import resource, numpy as np, pyarrow as pa
from tests import builders
from tasks.edge.validation import validate_batch
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import build_profile
from core.settings import DriftRule
card = builders.card()
profile = build_profile(builders.batch(2000, seed=9, target="price"), card)
n = 1_000_000
table = builders.batch(n)
table = table.set_column(table.column_names.index("cut"), "cut",
                         pa.array(np.char.add("c", np.arange(n).astype(str))))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batch = validate_batch(table, card, source="batch")
outcome = drift_report(profile, batch.table, DriftRule())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cut = outcome.features[2]
print(len(batch.warnings), cut.status, cut.score, (after - before) // 1024)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    warnings, status, score, grown_mib = done.stdout.split()
    assert (warnings, status, float(score)) == ("1", "ok", 1.0)
    assert int(grown_mib) < 300, f"validation and drift grew the process by {grown_mib} MiB"


def test_a_zero_row_reference_reports_too_little_data_never_drift() -> None:
    card = builders.card()
    profile = build_profile(builders.batch(0, target="price"), card)
    outcome = drift_report(profile, builders.batch(100), DriftRule())
    assert {d.status for d in (*outcome.features, outcome.prediction)} == {"insufficient_data"}
    assert not any(d.is_drifted for d in outcome.features)


# --- types ----------------------------------------------------------------------------------------

ODD_TYPES = {
    "list": pa.array([[1.0]] * 3, pa.list_(pa.float64())),
    "struct": pa.array([{"a": 1}] * 3, pa.struct([("a", pa.int64())])),
    "map": pa.array([[("k", 1)]] * 3, pa.map_(pa.string(), pa.int64())),
    "binary": pa.array([b"x"] * 3, pa.binary()),
    "null": pa.nulls(3),
    "timestamp": pa.array([0, 1, 2], pa.timestamp("s")),
}


@pytest.mark.parametrize("column", ["carat", "cut", "prediction", "row_id"])
@pytest.mark.parametrize("kind", sorted(ODD_TYPES))
def test_nested_or_unexpected_types_name_the_column_and_the_type(column: str, kind: str) -> None:
    table = builders.batch(3)
    odd = ODD_TYPES[kind]
    table = table.set_column(table.column_names.index(column), column, odd)
    with pytest.raises(InputError) as error:
        validate_batch(table, builders.card(), source="batch 2026-03-02")
    message = str(error.value)
    assert message.startswith(f"batch 2026-03-02: column {column!r} has type {odd.type}")


def test_a_column_written_twice_is_named(tmp_path: Path) -> None:
    from data_lake.storage import Storage

    table = builders.batch(3)
    doubled = pa.Table.from_arrays([*table.columns, table.column("carat")],
                                   names=[*table.column_names, "carat"])  # fmt: skip
    with pytest.raises(InputError, match="has column\\(s\\) carat more than once"):
        validate_batch(doubled, builders.card(), source="b")
    pq.write_table(doubled, tmp_path / "part-0.parquet")
    # the file reads as written, so the batch's validation names the column, not a damaged file
    read = Storage.from_uri(str(tmp_path)).read_parquet(str(tmp_path / "part-0.parquet"))
    with pytest.raises(InputError, match="has column\\(s\\) carat more than once"):
        validate_batch(read, builders.card(), source="b")


# --- dates --------------------------------------------------------------------------------------


@pytest.fixture
def lake_world(trained_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from core.settings import load_settings
    from driftline import commands

    for key, value in trained_env.items():
        monkeypatch.setenv(key, value)
    commands.simulate(load_settings(), model="diamonds-price", start=date(2026, 3, 1), days=2,
                      rows_per_day=50, scenario="none", seed=2)  # fmt: skip
    return trained_env


@pytest.mark.parametrize(
    "day, code, expected",
    [
        ("0001-01-01", 2, "batch date 0001-01-01 is outside 1900-01-01 .. 9998-12-31"),
        ("9999-12-31", 2, "batch date 9999-12-31 is outside 1900-01-01 .. 9998-12-31"),
        (
            "2030-01-01",
            1,
            "no scored batch for model=diamonds-price batch_date=2030-01-01: no *.parquet under",
        ),
    ],
)
@pytest.mark.prefect
def test_dates_outside_any_batch_give_one_clear_line(
    lake_world: dict[str, str], capsys: pytest.CaptureFixture[str], day: str, code: int, expected
) -> None:
    from driftline.cli import main

    assert main(["monitor", "--date", day]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    if code == 1:
        assert "(scored batches: 2026-03-01 .. 2026-03-02, 2 day(s))" in err

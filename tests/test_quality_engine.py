"""Data quality through the engine: result.json, the report, the gauges, the history export,
the policy's mutes, and versions registered before the checks."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import driftline
from core.errors import InputError
from core.policy import parse_policy
from data_lake.lake import Lake
from driftline.cli import main
from model_registry.policies import set_policy
from model_registry.registry import Registry
from tasks.edge.profile_file import profile_from_bytes, profile_to_bytes
from tasks.export.catalogue import RunStamp, metric_families
from tasks.results.day import MonitoringResult, from_json
from tests import builders

DAY = date(2026, 3, 2)
DAYS = [DAY - timedelta(days=d) for d in range(3, 0, -1)]


@pytest.fixture
def toy(tmp_path: Path) -> tuple[str, str]:
    """A registry with the toy model (a reference with predictions) and a lake with three clean
    days before DAY."""
    registry, lake = str(tmp_path / "registry"), str(tmp_path / "lake")
    reference = builders.batch(2000, seed=7, target="price").drop_columns(["model_version"])
    driftline.register_model(
        "toy", None, reference, target="price", categorical=["cut"], registry=registry
    )
    for i, day in enumerate(DAYS):
        frame = builders.batch(300, seed=20 + i, day=day)
        driftline.write_batch("toy", day, frame, lake=lake, registry=registry)
    return registry, lake


def scaled(day: date = DAY) -> pa.Table:
    """A batch whose depth came in hundredths (a unit change)."""
    table = builders.batch(300, seed=8, day=day)
    index = table.column_names.index("depth")
    return table.set_column(index, "depth", pc.multiply(table["depth"], 100.0))


def gauges(result: MonitoringResult) -> dict[tuple[str, tuple[str, ...]], float]:
    run = RunStamp(finished_at_seconds=0.0, duration_seconds=1.0)
    return {
        (
            family.name,
            tuple(v for k, v in sorted(s.labels.items()) if k != "model_version"),
        ): s.value
        for family in metric_families(result, run)
        for s in family.samples
    }


def test_a_scaled_column_is_reported_in_result_json_the_report_and_the_gauges(
    toy: tuple[str, str],
) -> None:
    registry, lake = toy
    driftline.write_batch("toy", DAY, scaled(), lake=lake, registry=registry)
    result = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)

    (finding,) = result.data_quality
    assert (finding.feature, finding.check) == ("depth", "scaled_column")
    assert finding.value == pytest.approx(100, rel=0.05)
    stored = Lake.open(lake).read_bytes(Lake.open(lake).result_path("toy", DAY))
    assert stored is not None
    assert json.loads(stored)["data_quality"][0]["check"] == "scaled_column"
    assert from_json(stored) == result

    report = (Path(lake) / "monitoring").rglob("report.html")
    (html,) = [p.read_text() for p in report if DAY.isoformat() in str(p)]
    assert html.index("depth scaled_column") < html.index("class=headline")

    found = gauges(result)
    assert found[("ml_data_quality_issue", ("scaled_column", "depth"))] == finding.value
    assert found[("ml_data_quality_issue", ("out_of_range", "carat"))] == 0
    assert found[("ml_data_quality_issue", ("row_count", "_batch"))] == 0
    assert found[("ml_data_quality_issues", ())] == 1


def test_a_clean_day_checks_everything_and_finds_nothing(toy: tuple[str, str]) -> None:
    registry, lake = toy
    driftline.write_batch("toy", DAY, builders.batch(300, seed=8, day=DAY), lake=lake,
                          registry=registry)  # fmt: skip
    result = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)
    assert result.data_quality == ()
    assert set(result.data_quality_checked) == {"carat", "depth", "cut", "_batch"}
    assert gauges(result)[("ml_data_quality_issues", ())] == 0


def test_a_muted_check_is_reported_muted_never_counted(toy: tuple[str, str]) -> None:
    registry, lake = toy
    mutes = {"mute_quality_checks": {"depth": ["scaled_column"]}}
    set_policy(Registry.open(registry), "toy", mutes, source="policy.json")
    driftline.write_batch("toy", DAY, scaled(), lake=lake, registry=registry)
    result = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)
    (finding,) = result.data_quality
    assert finding.muted and result.data_quality_issues == ()
    found = gauges(result)
    assert found[("ml_data_quality_issues", ())] == 0
    assert found[("ml_data_quality_muted", ("scaled_column", "depth"))] == 1


def test_the_policy_refuses_an_unknown_check_and_accepts_the_batch_checks() -> None:
    with pytest.raises(InputError, match=r"mute_quality_checks.x names unknown check\(s\) 'range'"):
        parse_policy({"mute_quality_checks": {"x": ["range"]}}, source="p.json")
    policy = parse_policy({"mute_quality_checks": {"_batch": ["row_count"]}}, source="p.json")
    policy.check_features(["carat"], source="p.json")  # _batch is no feature, and allowed


@pytest.mark.prefect
def test_findings_never_refuse_a_batch_and_the_backfill_exports_their_gauges(
    toy: tuple[str, str], tmp_path: Path
) -> None:
    registry, lake = toy
    driftline.write_batch("toy", DAY, scaled(), lake=lake, registry=registry)
    history = tmp_path / "history.om"
    code = main(["--lake", lake, "--registry", registry, "backfill", "--model", "toy",
                 "--start", str(DAYS[0]), "--end", str(DAY),
                 "--openmetrics", str(history)])  # fmt: skip
    assert code == 0
    text = history.read_text()
    assert 'ml_data_quality_issue{check="scaled_column",feature="depth",job="ml_monitoring"' in text
    issues = [line for line in text.splitlines() if line.startswith("ml_data_quality_issues{")]
    assert [line.split()[1] for line in issues] == ["0.0", "0.0", "0.0", "1.0"]


def test_a_profile_from_before_the_checks_derives_its_expectations_and_says_so() -> None:
    reference = builders.batch(2000, seed=7, target="price")
    from tasks.edge.profile_file import fit_profile

    current = fit_profile(reference, builders.card())
    table = pa.ipc.open_file(pa.py_buffer(profile_to_bytes(current))).read_all()
    meta = json.loads(table.schema.metadata[b"driftline.profile"])
    old = {**{k: v for k, v in meta.items() if k != "quality"}, "format": 2}
    table = table.replace_schema_metadata({b"driftline.profile": json.dumps(old).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    derived = profile_from_bytes(sink.getvalue().to_pybytes(), source="old").expectations

    assert derived.learned_from == "profile" and derived.duplicate_share is None
    assert derived.features == current.expectations.features
    assert current.expectations.learned_from == "reference"
    assert current.expectations.duplicate_share == 0.0


def test_a_stored_profile_keeps_its_expectations() -> None:
    from tasks.edge.profile_file import fit_profile

    reference = builders.batch(2000, seed=7, target="price")
    carat = np.round(reference["carat"].to_numpy(), 1)
    reference = reference.set_column(1, "carat", pa.array(carat, mask=np.arange(2000) % 9 == 0))
    profile = fit_profile(reference, builders.card())
    again = profile_from_bytes(profile_to_bytes(profile), source="p")
    assert again.expectations == profile.expectations


def test_an_extract_written_twice_is_a_duplicated_rows_finding_and_its_copies_are_left_out(
    toy: tuple[str, str],
) -> None:
    registry, lake = toy
    once = builders.batch(300, seed=8, day=DAY)
    driftline.write_batch("toy", DAY, once, lake=lake, registry=registry)
    single = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)
    twice = pa.concat_tables([once, once.slice(0, 150)])  # the same rows, row_id included
    with pytest.warns(UserWarning, match=r"150 row\(s\) repeat an earlier row whole"):
        driftline.write_batch("toy", DAY, twice, lake=lake, registry=registry)
    result = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)

    (finding,) = [f for f in result.data_quality if f.check == "duplicated_rows"]
    assert finding.feature == "_batch"
    assert finding.value == pytest.approx(150 / 450)
    assert result.n_rows == 300
    assert [(f.feature, f.score, f.p_value) for f in result.features] == [
        (f.feature, f.score, f.p_value) for f in single.features
    ]
    assert any("150 row(s) repeat an earlier row whole" in w for w in result.warnings)
    # the next night reads the batch in its window, not as a bad one
    later = DAY + timedelta(days=1)
    driftline.write_batch("toy", later, builders.batch(300, seed=9, day=later), lake=lake,
                          registry=registry)  # fmt: skip
    after = driftline.monitor_day("toy", later, lake=lake, registry=registry)
    assert not [w for w in after.warnings if "left out of the performance window" in w]


def test_a_row_id_repeated_with_other_values_is_still_refused(toy: tuple[str, str]) -> None:
    registry, lake = toy
    once = builders.batch(300, seed=8, day=DAY)
    other = once.slice(0, 1).set_column(
        once.column_names.index("depth"), "depth", pa.array([123.0])
    )
    with pytest.raises(InputError, match=r"'row_id' has duplicates \(e\.g\. '.+'\) whose rows"):
        driftline.write_batch(
            "toy", DAY, pa.concat_tables([once, other]), lake=lake, registry=registry
        )

"""Data-quality checks: each catches its fault, names it, and stays quiet on clean batches."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core.policy import Policy
from core.settings import DriftRule
from tasks.day.quality import quality_of
from tasks.edge.validation import validate_batch
from tasks.performance.window import BatchPerformance, PerformanceOutcome
from tasks.quality.assess import QualityOutcome
from tasks.quality.batch import row_count_band
from tasks.quality.checks import BATCH, CHECKS, QualityRules
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import ReferenceProfile, build_profile
from tests.builders import batch, card

DAY = date(2026, 3, 2)  # a Monday


def profile() -> ReferenceProfile:
    return build_profile(batch(2000, seed=99, target="price"), card())


def assess(
    table: pa.Table,
    *,
    history: Mapping[date, int] | None = None,
    mute: Mapping[str, tuple[str, ...]] | None = None,
    day: date = DAY,
) -> QualityOutcome:
    """The day's quality step as the engine runs it, on a builder batch."""
    c = card()
    validated = validate_batch(table, c, source=f"batch {day}")
    drift = drift_report(profile(), validated.table, DriftRule())
    window = tuple(BatchPerformance(d, n, 0, 0.0, None) for d, n in (history or {}).items())
    policy = Policy(mute_quality_checks=mute or {})
    return quality_of(
        c, profile(), policy, day, validated, drift, PerformanceOutcome(window, 0, ())
    )


def found(outcome: QualityOutcome) -> set[tuple[str, str]]:
    return {(f.feature, f.check) for f in outcome.issues}


def replaced(table: pa.Table, name: str, values: object) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values))


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_batch_has_no_finding_and_every_check_ran(seed: int) -> None:
    outcome = assess(batch(500, seed=seed))
    assert outcome.findings == ()
    assert set(outcome.checked) == {"carat", "depth", "cut", BATCH}
    assert {c for checks in outcome.checked.values() for c in checks} == set(CHECKS)


def test_a_value_just_past_the_reference_maximum_is_not_out_of_range() -> None:
    reference_max = float(np.max(batch(2000, seed=99)["carat"].to_numpy()))
    table = batch(500, seed=1)
    carat = table["carat"].to_numpy().copy()
    carat[:3] = reference_max * 1.02
    assert found(assess(replaced(table, "carat", carat))) == set()


def test_values_far_outside_the_reference_range_are_out_of_range_with_their_share() -> None:
    table = batch(500, seed=1)
    carat = table["carat"].to_numpy().copy()
    carat[:25] = -50.0
    (finding,) = assess(replaced(table, "carat", carat)).issues
    assert (finding.feature, finding.check) == ("carat", "out_of_range")
    assert finding.value == pytest.approx(25 / 500)
    assert "outside" in finding.expected


def test_a_burst_of_nulls_is_found_with_its_share() -> None:
    table = batch(500, seed=1)
    depth = pa.array(table["depth"].to_numpy(), mask=np.arange(500) % 4 == 0)
    (finding,) = assess(replaced(table, "depth", depth)).issues
    assert (finding.feature, finding.check, finding.value) == ("depth", "null_burst", 0.25)


def test_an_unseen_category_is_named_with_its_share() -> None:
    table = batch(500, seed=1)
    cut = np.array(table["cut"].to_pylist(), dtype=object)
    cut[:40] = "Platinum"
    (finding,) = assess(replaced(table, "cut", cut.astype(str))).issues
    assert (finding.feature, finding.check) == ("cut", "unseen_categories")
    assert finding.value == pytest.approx(40 / 500)
    assert "'Platinum' (8.0%)" in finding.detail


def test_a_vanished_category_is_named() -> None:
    table = batch(500, seed=1)
    cut = np.where(np.array(table["cut"].to_pylist()) == "c", "a", table["cut"].to_pylist())
    (finding,) = assess(replaced(table, "cut", cut)).issues
    assert (finding.feature, finding.check) == ("cut", "vanished_categories")
    assert "'c'" in finding.detail


def test_a_category_whose_case_or_spacing_changed_is_named_and_not_counted_as_new() -> None:
    table = batch(500, seed=1)
    cut = pc.utf8_upper(table["cut"]).combine_chunks()
    (finding,) = assess(replaced(table, "cut", cut)).issues
    assert (finding.feature, finding.check, finding.value) == ("cut", "category_case_changed", 1)
    assert "'A' for 'a'" in finding.detail
    spaced = pc.binary_join_element_wise(table["cut"], " ", "").combine_chunks()
    assert found(assess(replaced(table, "cut", spaced))) == {("cut", "category_case_changed")}


@pytest.mark.parametrize("factor", [1000.0, 100.0, 10.0, 0.01, 10_000.0, 2.54, 1 / 2.54])
def test_a_column_in_other_units_is_a_scaled_column_and_not_out_of_range(factor: float) -> None:
    table = batch(500, seed=1)
    (finding,) = assess(replaced(table, "depth", pc.multiply(table["depth"], factor))).issues
    assert (finding.feature, finding.check) == ("depth", "scaled_column")
    assert finding.value == pytest.approx(factor, rel=0.05)


def test_two_swapped_columns_are_found_on_both_and_not_as_out_of_range() -> None:
    table = batch(500, seed=1)
    swapped = replaced(replaced(table, "carat", table["depth"]), "depth", table["carat"])
    outcome = assess(swapped)
    assert found(outcome) == {("carat", "swapped_columns"), ("depth", "swapped_columns")}
    assert {f.detail for f in outcome.issues} == {"with 'depth'", "with 'carat'"}


def test_a_constant_column_is_found() -> None:
    table = batch(500, seed=1)
    assert found(assess(replaced(table, "depth", np.full(500, 60.0)))) == {
        ("depth", "constant_column")
    }
    assert found(assess(replaced(table, "cut", ["b"] * 500))) == {("cut", "constant_column")}


def test_rows_repeated_within_the_batch_are_duplicated_rows() -> None:
    table = batch(500, seed=1)
    again = table.slice(0, 50)
    again = replaced(again, "row_id", [f"again-{i}" for i in range(50)])
    (finding,) = assess(pa.concat_tables([table, again])).issues
    assert (finding.feature, finding.check) == (BATCH, "duplicated_rows")
    assert finding.value == pytest.approx(50 / 550)


def weekly_history(weeks: int = 4) -> dict[date, int]:
    """Weekdays 1000 rows, weekends 400, with a little noise."""
    rng = np.random.default_rng(3)
    days = [DAY - timedelta(days=d) for d in range(1, 7 * weeks + 1)]
    return {d: int((400 if d.weekday() >= 5 else 1000) * rng.lognormal(0, 0.03)) for d in days}


def test_the_row_count_band_follows_the_weekday() -> None:
    history = weekly_history()
    saturday, monday = DAY + timedelta(days=5), DAY
    low_day, high_day = (
        row_count_band(history, saturday, QualityRules()),
        row_count_band(history, monday, QualityRules()),
    )
    assert low_day is not None and high_day is not None
    assert low_day.low < 400 < low_day.high < high_day.low < 1000 < high_day.high


def test_a_truncated_batch_is_below_its_row_count_band_and_a_normal_one_is_not() -> None:
    history = weekly_history()
    assert found(assess(batch(950, seed=1), history=history)) == set()
    (finding,) = assess(batch(300, seed=1), history=history).issues
    assert (finding.feature, finding.check, finding.value) == (BATCH, "row_count", 300)


def test_the_row_count_is_not_checked_before_a_few_batches() -> None:
    assert row_count_band({DAY - timedelta(days=1): 1000}, DAY, QualityRules()) is None


def test_a_muted_check_is_reported_muted_and_not_counted() -> None:
    table = batch(500, seed=1)
    depth = pa.array(table["depth"].to_numpy(), mask=np.arange(500) % 4 == 0)
    outcome = assess(replaced(table, "depth", depth), mute={"depth": ("null_burst",)})
    (finding,) = outcome.findings
    assert finding.muted and outcome.issues == ()


def test_the_policy_knows_every_check_by_the_name_the_checks_give_it() -> None:
    from core.policy import BATCH_FEATURE, QUALITY_CHECKS

    assert set(QUALITY_CHECKS) == set(CHECKS) and len(QUALITY_CHECKS) == len(CHECKS)
    assert BATCH == BATCH_FEATURE

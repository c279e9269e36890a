"""A normal day, learned from the reference's days: a day is drifted only beyond it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from core.settings import DriftRule
from model_registry.registry import FeatureSpec
from tasks.edge.profile_file import fit_profile, profile_from_bytes, profile_to_bytes
from tasks.stats import normal
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import build_profile

START = date(2026, 1, 1)
ROWS = 900


class Specs:
    features = (FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical", ("a", "b", "c")))


def day_rows(
    rng: np.random.Generator, *, spread: float, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One day: x around the day's own mean (sd `spread` across days), plus `shift`."""
    x = rng.normal(rng.normal(0, spread) + shift, 1, ROWS)
    share = np.clip(
        np.array([0.5, 0.3, 0.2]) + np.array([1, -1, 0]) * rng.normal(0, spread / 5), 0, 1
    )
    return x, rng.choice(["a", "b", "c"], ROWS, p=share / share.sum())


def reference(rng: np.random.Generator, *, days: int, spread: float) -> pa.Table:
    xs, cs = zip(*(day_rows(rng, spread=spread) for _ in range(days)), strict=True)
    x = np.concatenate(xs)
    batch_date = [START + timedelta(days=d) for d in range(days) for _ in range(ROWS)]
    return pa.table(
        {
            "x": x,
            "c": np.concatenate(cs),
            "prediction": x,
            "batch_date": pa.array(batch_date, pa.date32()),
        }
    )


def batch(x: np.ndarray, c: np.ndarray) -> pa.Table:
    return pa.table({"x": x, "c": c, "prediction": x})


def test_a_reference_day_is_scored_against_the_rest_of_the_reference_as_scipy_scores_it() -> None:
    rng = np.random.default_rng(3)
    table = reference(rng, days=6, spread=0.2)
    profile = build_profile(table, Specs)
    day = np.flatnonzero(np.asarray(table.column("batch_date").cast(pa.int32())) == 20454 + 2)
    rest = np.setdiff1d(np.arange(table.num_rows), day)
    x = np.asarray(table.column("x"))
    d = stats.ks_2samp(x[day], x[rest]).statistic
    n_eff = day.size * rest.size / table.num_rows
    expected = d**2 - (normal.KOLMOGOROV_MEDIAN**2) / n_eff
    got = normal._day_excess(profile.features["x"], table.column("x"), day)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_kolmogorov_median_is_scipys() -> None:
    assert stats.kstwobign.ppf(0.5) == pytest.approx(normal.KOLMOGOROV_MEDIAN, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_days_that_vary_are_not_called_drifted_but_a_shift_beyond_them_is(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = reference(rng, days=60, spread=0.15)
    fixed = build_profile(table, Specs)
    learned = fit_profile(table, Specs)
    assert set(learned.normal) == {"x", "c", "prediction"}
    assert all(r.days == 60 for r in learned.normal.values())
    nights = 100
    flagged_fixed = flagged_learned = caught = 0
    for _ in range(nights):
        today = batch(*day_rows(rng, spread=0.15))
        flagged_fixed += any(f.is_drifted for f in drift_report(fixed, today, DriftRule()).features)
        outcome = drift_report(learned, today, DriftRule())
        flagged_learned += any(f.is_drifted for f in outcome.features)
        shifted = batch(*day_rows(rng, spread=0.15, shift=0.8))
        x = drift_report(learned, shifted, DriftRule()).features[0]
        assert x.feature == "x" and x.normal_upper > 0
        caught += x.is_drifted
    assert flagged_learned <= nights * 0.1 < flagged_fixed
    assert caught >= nights * 0.9


def test_independent_days_leave_the_rule_as_it_was() -> None:
    rng = np.random.default_rng(7)
    table = reference(rng, days=30, spread=0.0)
    fixed, learned = build_profile(table, Specs), fit_profile(table, Specs)
    for shift in (0.0, 0.2, 0.4):
        today = batch(*day_rows(rng, spread=0.0, shift=shift))
        one = drift_report(fixed, today, DriftRule()).features
        other = drift_report(learned, today, DriftRule()).features
        assert [f.is_drifted for f in one] == [f.is_drifted for f in other]
    # what a normal day of the reference's own days reaches: about its sampling score
    x = learned.normal["x"]
    assert x.between < 2 * normal.sampling_score(learned.features["x"], ROWS)


def test_few_or_no_days_learn_nothing() -> None:
    rng = np.random.default_rng(1)
    assert fit_profile(reference(rng, days=4, spread=0.3), Specs).normal == {}
    assert fit_profile(reference(rng, days=30, spread=0.3).drop(["batch_date"]), Specs).normal == {}


def test_the_profile_file_keeps_the_normal_ranges() -> None:
    learned = fit_profile(reference(np.random.default_rng(2), days=10, spread=0.2), Specs)
    again = profile_from_bytes(profile_to_bytes(learned), source="test")
    assert again.normal == learned.normal


def test_registering_a_reference_with_its_days_learns_them(tmp_path) -> None:
    import driftline

    rng = np.random.default_rng(4)
    table = reference(rng, days=8, spread=0.2).to_pandas()
    table["y"] = table["x"] * 2 + rng.normal(0, 1, len(table))
    table["prediction"] = table["x"] * 2
    card = driftline.register_model(
        "days", None, table, target="y", categorical=["c"], registry=str(tmp_path)
    )
    assert [f.name for f in card.features] == ["x", "c"]  # the days are not a feature
    from model_registry.registry import Registry
    from tasks.edge.profile_file import load_profile

    store = Registry.open(str(tmp_path))
    assert "batch_date" in store.load_reference(card).column_names
    assert set(load_profile(store, card).normal) == {"x", "c", "prediction"}


def test_a_date_column_with_a_missing_day_is_refused_naming_it(tmp_path) -> None:
    import driftline
    from core.errors import InputError

    frame = pd.DataFrame(
        {"x": [1.0, 2.0], "y": [1.0, 2.0], "prediction": [1.0, 2.0], "day": ["2026-01-01", None]}
    )
    with pytest.raises(InputError, match=r"'day': row 1 has no date"):
        driftline.register_model(
            "days", None, frame, target="y", date_column="day", registry=str(tmp_path)
        )


def test_a_monitored_day_says_what_a_normal_day_reaches(tmp_path) -> None:
    import json

    import driftline
    from data_lake.lake import Lake

    rng = np.random.default_rng(5)
    table = reference(rng, days=8, spread=0.2).to_pandas()
    table["y"] = table["x"] * 2
    registry, lake = str(tmp_path / "registry"), str(tmp_path / "lake")
    driftline.register_model("days", None, table, target="y", categorical=["c"], registry=registry)
    x, c = day_rows(rng, spread=0.2)
    today = date(2026, 3, 2)
    frame = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(ROWS)],
            "scored_at": pd.Timestamp("2026-03-02T06:00", tz="UTC"),
            "x": x,
            "c": c,
            "prediction": x * 2,
            "model_version": "v1",
        }
    )
    driftline.write_batch("days", today, frame, lake=lake, registry=registry)
    result = driftline.monitor_day("days", today, lake=lake, registry=registry)
    uppers = {f.feature: f.normal_upper for f in result.features}
    assert set(uppers) == {"x", "c"} and all(u > 0 for u in uppers.values())
    store = Lake.open(lake)
    written = json.loads(Path(store.result_path("days", today)).read_text())
    assert [f["normal_upper"] for f in written["features"]] == pytest.approx(list(uppers.values()))
    page = (Path(store.result_path("days", today)).parent / "report.html").read_text()
    assert "normal day" in page and f"up to {uppers['x']:.3g}" in page

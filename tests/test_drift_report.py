"""Drift of a whole batch: every feature of the card and the prediction, against the profile."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from core.settings import DriftRule
from data_lake.lake import Lake
from tasks.day.inputs import read_batch
from tasks.quality.facts import NumericFacts
from tasks.stats import batch_drift
from tasks.stats.batch_drift import drift_report
from tasks.stats.profile import build_profile
from tests.builders import batch, card


@pytest.fixture(scope="module")
def profile():
    return build_profile(batch(3000, seed=99, target="price"), card())


def test_report_covers_every_feature_in_card_order_and_the_prediction(profile):
    outcome = drift_report(profile, batch(500, seed=1), DriftRule())
    assert [(d.feature, d.test) for d in outcome.features] == [
        ("carat", "ks"),
        ("depth", "ks"),
        ("cut", "chi2"),
    ]
    assert (outcome.prediction.feature, outcome.prediction.test) == ("prediction", "ks")
    assert not any(d.is_drifted for d in outcome.features)


def test_shifted_feature_is_flagged_alone(profile):
    outcome = drift_report(profile, batch(2000, seed=1, shift=0.3), DriftRule())
    assert [d.feature for d in outcome.features if d.is_drifted] == ["carat"]


def test_report_matches_scipy_on_the_raw_columns(profile):
    reference, current = batch(3000, seed=99), batch(800, seed=4, shift=0.05)
    carat = drift_report(profile, current, DriftRule()).features[0]
    expected = stats.ks_2samp(reference.column("carat"), current.column("carat"))
    assert carat.score == pytest.approx(expected.statistic, abs=1e-12)
    assert carat.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_threads_change_nothing(profile):
    current = batch(4000, seed=3, shift=0.1)
    one = drift_report(profile, current, DriftRule(), workers=1)
    two = drift_report(profile, current, DriftRule(), workers=2)
    assert one == two


def test_categories_typed_differently_from_the_reference_still_match(profile):
    current = batch(600, seed=2)
    as_dictionary = current.set_column(
        current.schema.get_field_index("cut"), "cut", current.column("cut").dictionary_encode()
    )
    plain = drift_report(profile, current, DriftRule()).features[2]
    assert drift_report(profile, as_dictionary, DriftRule()).features[2] == plain


def test_small_batch_is_insufficient_data_never_drift(profile):
    outcome = drift_report(profile, batch(20, seed=1, shift=3.0), DriftRule())
    assert {d.status for d in outcome.features} == {"insufficient_data"}
    assert not any(d.is_drifted for d in outcome.features)
    assert outcome.prediction.status == "insufficient_data"


def test_missing_values_are_reported_per_feature(profile):
    current = batch(400, seed=1)
    carat = current.column("carat").to_numpy().copy()
    mask = np.arange(400) < 100
    current = current.set_column(1, "carat", pa.array(carat, mask=mask))
    outcome = drift_report(profile, current, DriftRule())
    assert outcome.features[0].missing_ratio == pytest.approx(0.25)
    assert outcome.features[0].n_current == 300


def test_the_nightly_read_keeps_categories_encoded_and_reports_what_a_plain_read_does(
    profile, tmp_path
):
    """Two files of a 100,000-row batch: categorical strings read as Parquet's dictionary codes
    (no string decoded), numeric columns bucketed, every reported number as from plain strings
    sorted whole."""
    day = date(2026, 3, 2)
    lake = Lake.open(str(tmp_path / "lake"))
    rows = batch(100_000, seed=5, shift=0.02)
    for i, part in enumerate((rows.slice(0, 60_000), rows.slice(60_000))):
        lake.write_table(f"{lake.scored_dir('toy', day)}/part-{i}.parquet", part)

    read = read_batch(lake, card(), day).table
    assert pa.types.is_dictionary(read.column("cut").type)
    assert read.column("carat").type == pa.float64()
    nightly = drift_report(profile, read, DriftRule())
    assert nightly.facts["carat"].tied is None  # bucketed
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_drift, "in_buckets", lambda *args: None)
        plain = drift_report(profile, rows, DriftRule())
    assert nightly == plain
    assert nightly.facts["cut"] == plain.facts["cut"]
    for name in ("carat", "depth", "prediction"):
        got, expected = nightly.facts[name], plain.facts[name]
        assert isinstance(got, NumericFacts) and isinstance(expected, NumericFacts)
        assert (got.n_present, got.n_missing, got.shape, got.n_outside) == (
            expected.n_present,
            expected.n_missing,
            expected.shape,
            expected.n_outside,
        )

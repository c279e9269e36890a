"""The estimate's band on real days: the between-day error measured on the reference's days,
kept in the card (format 2, format 1 still read), and each night's check of a labelled batch's
realized MAE against the band its own night estimated."""

from __future__ import annotations

import dataclasses
import io
import math
from datetime import date, timedelta
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from model_registry.registry import HoldoutMetrics, Registry
from tasks.day.band import batch_estimate, with_band_check
from tasks.day.engine import run_day
from tasks.day.inputs import load_model_context
from tasks.edge.estimator_file import load_loss_estimator, loss_estimator_files
from tasks.edge.profile_file import profile_files
from tasks.performance.band_check import check_band
from tasks.performance.estimate import (
    ESTIMATOR_FORMAT,
    EXTRA_KEY,
    LOSS_ESTIMATOR_FILE,
    PerformanceEstimate,
    between_day_error,
    estimate_from_losses,
    estimate_performance,
)
from tasks.performance.window import BatchPerformance, RegressionMetrics
from tasks.reports.day import performance_facts
from tasks.results.day import from_json, to_json
from tests.builders import card
from tests.builders import result as built_result

FIRST = date(2026, 1, 1)


def reference_with_days(days: int, rows: int, *, day_sd: float, seed: int = 0) -> pa.Table:
    """Rows for `card()` whose error scale is shared by each day's rows: each day multiplies it
    by exp(N(0, day_sd)), as a day's weather would."""
    rng = np.random.default_rng(seed)
    n = days * rows
    carat = rng.normal(1.0, 0.3, n)
    prediction = 100.0 + 50.0 * carat
    day_scale = np.repeat(np.exp(rng.normal(0.0, day_sd, days)), rows)
    scale = (2.0 + 10.0 * carat**2) * day_scale
    return pa.table(
        {
            "carat": carat,
            "depth": rng.normal(60.0, 2.0, n),
            "cut": rng.choice(["a", "b", "c"], n),
            "prediction": prediction,
            "price": prediction + rng.normal(0.0, 1.0, n) * scale,
            "batch_date": np.repeat([FIRST + timedelta(days=d) for d in range(days)], rows),
        }
    )


def register(root: Path, reference: pa.Table, files: dict[str, bytes], extra: dict) -> Registry:
    registry = Registry.open(str(root))
    sink = io.BytesIO()
    pq.write_table(reference, sink)
    registry.register(
        model="toy",
        estimator_bytes=b"not used by monitoring",
        reference_bytes=sink.getvalue(),
        target="price",
        features=card().features,
        metrics=HoldoutMetrics(mae=1.0, rmse=1.0, mape=0.1, r2=0.9),
        libraries={},
        extra_files={**profile_files(reference, card()), **files},
        extra=extra,
    )
    return registry


# the between-day error -------------------------------------------------------------------------


def days_of_losses(
    days: int, rows: int, *, day_sd: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Held-out rows whose predicted losses are right on average, each day's errors scaled
    by its own factor of mean 1 and relative sd `day_sd`."""
    rng = np.random.default_rng(seed)
    sigma = rng.gamma(2.0, 1.0, days * rows)
    factor = np.repeat(1.0 + rng.normal(0.0, day_sd, days), rows)
    realized = np.abs(rng.normal(0.0, 1.0, sigma.size) * sigma * factor)
    predicted_abs, predicted_sq = sigma * math.sqrt(2 / math.pi), sigma**2
    return np.repeat(np.arange(days), rows), realized, predicted_abs, predicted_sq


def test_the_day_error_is_what_a_days_rows_share_beyond_their_own_noise() -> None:
    days, realized, absolute, squared = days_of_losses(200, 150, day_sd=0.3, seed=1)
    used, day_error = between_day_error(days, realized, absolute, squared)
    assert used == 200
    assert day_error == pytest.approx(0.3, rel=0.15)


def test_independent_days_have_next_to_no_day_error() -> None:
    days, realized, absolute, squared = days_of_losses(200, 150, day_sd=0.0, seed=2)
    assert between_day_error(days, realized, absolute, squared)[1] < 0.03


def test_without_days_or_with_too_few_days_of_rows_there_is_no_day_error() -> None:
    days, realized, absolute, squared = days_of_losses(4, 150, day_sd=0.5, seed=3)
    assert between_day_error(None, realized, absolute, squared) == (0, 0.0)
    assert between_day_error(days, realized, absolute, squared) == (4, 0.0)
    thin, realized, absolute, squared = days_of_losses(50, 20, day_sd=0.5, seed=3)
    assert between_day_error(thin, realized, absolute, squared) == (0, 0.0)


def test_the_day_error_widens_the_band_in_quadrature_relative_to_the_mae() -> None:
    absolute = np.full(400, 3.0)
    squared = np.full(400, 13.0)
    plain = estimate_from_losses(absolute, squared, n_rows=400, level_error=0.0)
    daily = estimate_from_losses(absolute, squared, n_rows=400, level_error=0.0, day_error=0.2)
    assert daily.mae == plain.mae
    assert daily.mae_standard_error**2 == pytest.approx(0.1**2 + (0.2 * 3.0) ** 2)


# the card ----------------------------------------------------------------------------------


def test_a_reference_with_days_keeps_their_error_in_the_card_and_the_band_holds_it(
    tmp_path: Path,
) -> None:
    reference = reference_with_days(40, 200, day_sd=0.4)
    files, extra = loss_estimator_files(reference, card())
    assert extra[EXTRA_KEY]["format"] == ESTIMATOR_FORMAT == 2
    accuracy = extra[EXTRA_KEY]["accuracy"]
    assert accuracy["error_days"] == 40
    assert 0.2 < accuracy["day_error"] < 0.6
    registry = register(tmp_path, reference, files, extra)
    loaded = load_loss_estimator(registry, registry.card("toy"))
    assert loaded is not None and loaded.accuracy.day_error == accuracy["day_error"]
    estimate = estimate_performance(loaded, reference.slice(0, 500))
    assert estimate is not None
    assert estimate.mae_standard_error >= accuracy["day_error"] * estimate.mae


def test_an_estimator_stored_in_format_1_still_loads_with_the_band_it_had(tmp_path: Path) -> None:
    reference = reference_with_days(40, 100, day_sd=0.4).drop_columns(["batch_date"])
    files, extra = loss_estimator_files(reference, card())
    old = joblib.load(io.BytesIO(files[LOSS_ESTIMATOR_FILE]))
    sink = io.BytesIO()
    joblib.dump({**old, "format": 1}, sink)
    entry = dict(extra[EXTRA_KEY], format=1)
    entry["accuracy"] = {
        k: v for k, v in entry["accuracy"].items() if k not in ("day_error", "error_days")
    }
    registry = register(
        tmp_path, reference, {LOSS_ESTIMATOR_FILE: sink.getvalue()}, {EXTRA_KEY: entry}
    )
    loaded = load_loss_estimator(registry, registry.card("toy"))
    assert loaded is not None
    assert (loaded.accuracy.day_error, loaded.accuracy.error_days) == (0.0, 0)


# the night's check ---------------------------------------------------------------------------


def estimate(mae: float, lower: float, upper: float) -> PerformanceEstimate:
    return PerformanceEstimate(900, 900, mae, lower, upper, (upper - lower) / 5.16, mae * 1.4)


def labelled(day: date, mae: float) -> BatchPerformance:
    return BatchPerformance(day, 900, 880, 880 / 900, RegressionMetrics(mae, 30.0, 0.5, 0.1))


def test_a_realized_mae_outside_its_band_is_flagged_and_one_inside_is_not() -> None:
    day = date(2026, 2, 25)
    band = estimate(20.0, 10.0, 30.0)
    outside = check_band(labelled(day, 34.0), band)
    assert outside is not None and outside.is_outside_band
    assert (outside.batch_date, outside.realized_mae, outside.mae_upper) == (day, 34.0, 30.0)
    inside = check_band(labelled(day, 29.0), band)
    assert inside is not None and not inside.is_outside_band
    assert check_band(None, band) is None and check_band(labelled(day, 9.0), None) is None


def test_the_night_checks_the_labelled_batch_against_the_band_made_for_it() -> None:
    today = built_result()
    reported = today.current_performance
    assert reported is not None
    asked: list[date] = []

    def estimate_of(day: date) -> PerformanceEstimate | None:
        asked.append(day)
        return estimate(1.0, 0.5, 1.2)

    checked = with_band_check(today, estimate_of).band_check
    assert asked == [reported.batch_date]
    assert checked is not None and checked.is_outside_band  # 1.5 above 1.2
    assert checked.batch_date == reported.batch_date and checked.realized_mae == 1.5
    assert with_band_check(today, lambda day: None).band_check is None


def test_a_batchs_band_made_again_is_the_one_its_own_night_made(tmp_path: Path) -> None:
    reference = reference_with_days(40, 200, day_sd=0.4)
    registry = register(tmp_path / "registry", reference, *loss_estimator_files(reference, card()))
    context = load_model_context(registry, "toy")
    lake = Lake.open(str(tmp_path / "lake"))
    day = date(2026, 2, 25)
    batch = reference.drop_columns(["batch_date", "price"]).slice(0, 300)
    batch = batch.append_column("row_id", pa.array([f"r{i}" for i in range(300)]))
    lake.replace_partition(lake.scored_dir("toy", day), "part-0.parquet", batch)
    own = run_day(lake, context, day, load_settings({"DATA_LAKE_URI": str(tmp_path / "lake")},
                  push=False)).result.estimate  # fmt: skip
    assert own is not None
    assert batch_estimate(lake, context.card, context.loss_estimator, day) == own
    assert batch_estimate(lake, context.card, context.loss_estimator, day + timedelta(1)) is None
    assert batch_estimate(lake, context.card, None, day) is None


def test_the_check_is_in_result_json_and_a_result_without_it_still_reads() -> None:
    day = date(2026, 2, 25)
    checked = dataclasses.replace(
        built_result(), band_check=check_band(labelled(day, 34.0), estimate(20.0, 10.0, 30.0))
    )
    assert from_json(to_json(checked)) == checked
    assert b'"is_outside_band": true' in to_json(checked)
    older = (
        to_json(built_result())
        .replace(b'"band_check": null,', b"")
        .replace(b',\n "band_check": null', b"")
    )
    assert b"band_check" not in older
    assert from_json(older).band_check is None


def test_the_report_says_when_the_realized_mae_left_its_band() -> None:
    day = date(2026, 2, 25)
    band = estimate(20.0, 10.0, 30.0)
    outside = dataclasses.replace(built_result(), band_check=check_band(labelled(day, 34.0), band))
    facts = " ".join(performance_facts(outside))
    assert "realized MAE of batch 2026-02-25 34 is OUTSIDE the band" in facts
    assert "concept drift the estimate cannot see" in facts
    inside = dataclasses.replace(built_result(), band_check=check_band(labelled(day, 29.0), band))
    assert "29 is within the band estimated for it" in " ".join(performance_facts(inside))

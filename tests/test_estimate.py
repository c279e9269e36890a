"""Performance before the labels: the loss estimator fitted at registration, stored hash-checked,
fitted and cached for old versions, and the estimated MAE's band."""

from __future__ import annotations

import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import InputError
from model_registry.registry import HoldoutMetrics, ModelCard, Registry
from tasks.day import engine as monitoring
from tasks.day import inputs
from tasks.edge.estimator_file import load_loss_estimator, loss_estimator_files
from tasks.edge.profile_file import profile_files
from tasks.performance.estimate import (
    EXTRA_KEY,
    LOSS_ESTIMATOR_FILE,
    PerformanceEstimate,
    design_matrix,
    estimate_from_losses,
    estimate_performance,
    fit_loss_estimator,
    sample_rows,
)
from tests.builders import card

# a pickle that would run code if it were ever loaded
EVIL = b"cos\nsystem\n(S'touch {marker}'\ntR."


def scored(rows: int, *, seed: int, carat_mean: float = 1.0) -> pa.Table:
    """Rows for `card()` whose error grows with carat and doubles for cut "c"."""
    rng = np.random.default_rng(seed)
    carat = rng.normal(carat_mean, 0.3, rows)
    cut = rng.choice(["a", "b", "c"], rows)
    prediction = 100.0 + 50.0 * carat
    scale = (2.0 + 10.0 * carat**2) * np.where(cut == "c", 2.0, 1.0)
    return pa.table(
        {
            "row_id": [f"r{seed}-{i}" for i in range(rows)],
            "carat": carat,
            "depth": rng.normal(60.0, 2.0, rows),
            "cut": cut,
            "prediction": prediction,
            "price": prediction + rng.normal(0.0, 1.0, rows) * scale,
        }
    )


def realized_mae(table: pa.Table) -> float:
    return float(np.mean(np.abs(table.column("price").to_numpy() - table["prediction"].to_numpy())))


def register(
    root: Path, reference: pa.Table, *, with_estimator: bool
) -> tuple[Registry, ModelCard]:
    """A toy version like `driftline register` writes it, or as versions before estimators."""
    registry = Registry.open(str(root))
    sink = io.BytesIO()
    pq.write_table(reference, sink)
    files, extra = loss_estimator_files(reference, card()) if with_estimator else ({}, {})
    registered = registry.register(
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
    return registry, registered


@pytest.fixture(scope="module")
def reference() -> pa.Table:
    return scored(3000, seed=1)


# the band ------------------------------------------------------------------------------------


def test_the_band_is_the_realized_maes_standard_error_from_predicted_absolute_and_squared_loss():
    n = 400
    absolute = np.full(n, 3.0)
    squared = np.full(n, 13.0)  # Var(|e| | x) = 13 - 3^2 = 4 per row
    estimate = estimate_from_losses(absolute, squared, n_rows=n, level_error=0.0, z=2.0)
    standard_error = math.sqrt(np.sum(np.maximum(squared - absolute**2, 0))) / n
    assert standard_error == pytest.approx(2.0 / 20.0)
    assert estimate.mae == 3.0 and estimate.rmse == pytest.approx(math.sqrt(13.0))
    assert estimate.mae_standard_error == pytest.approx(standard_error)
    assert (estimate.mae_lower, estimate.mae_upper) == pytest.approx((2.8, 3.2))


def test_a_row_whose_squared_loss_is_below_its_absolute_loss_squared_adds_no_noise():
    estimate = estimate_from_losses(
        np.array([2.0, 2.0]), np.array([3.0, 8.0]), n_rows=2, level_error=0.0
    )
    assert estimate.mae_standard_error == pytest.approx(math.sqrt(4.0) / 2)


def test_the_band_covers_the_realized_mae_at_its_nominal_rate_when_the_losses_are_right():
    rng = np.random.default_rng(3)
    n, batches = 500, 2000
    sigma = rng.gamma(2.0, 1.0, n)  # heteroscedastic errors, e_i ~ N(0, sigma_i^2)
    absolute, squared = sigma * math.sqrt(2 / math.pi), sigma**2  # E|e_i|, E e_i^2
    estimate = estimate_from_losses(absolute, squared, n_rows=n, level_error=0.0, z=1.96)
    realized = np.abs(rng.normal(0.0, 1.0, (batches, n)) * sigma).mean(axis=1)
    covered = np.mean((estimate.mae_lower <= realized) & (realized <= estimate.mae_upper))
    assert 0.93 < covered < 0.97


def test_a_sample_and_the_estimators_level_widen_the_band_in_quadrature():
    absolute = np.array([1.0, 2.0, 3.0, 4.0])
    squared = absolute**2 + 1.0
    full = estimate_from_losses(absolute, squared, n_rows=4, level_error=0.0)
    sampled = estimate_from_losses(absolute, squared, n_rows=40, level_error=0.0)
    levelled = estimate_from_losses(absolute, squared, n_rows=4, level_error=0.1)
    assert full.mae_standard_error**2 == pytest.approx(1.0 / 4)
    # noise of 40 rows, plus the spread of l over a sample of 4 of them
    assert sampled.mae_standard_error**2 == pytest.approx(
        1.0 / 40 + np.var(absolute, ddof=1) / 4 * (1 - 4 / 40)
    )
    assert levelled.mae_standard_error**2 == pytest.approx(1.0 / 4 + (0.1 * 2.5) ** 2)


def test_a_large_batch_is_estimated_from_a_seeded_sample_of_rows():
    assert sample_rows(1000, 1000) is None
    rows = sample_rows(5000, 1000)
    assert rows is not None and rows.size == 1000 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, sample_rows(5000, 1000))  # a rerun predicts the same rows


# the inputs ----------------------------------------------------------------------------------


def test_categories_are_coded_by_the_cards_string_forms_and_unknown_or_missing_is_nan():
    table = pa.table(
        {
            "carat": pa.array([1, 2, None], pa.int64()),
            "depth": [60.0, float("nan"), 61.0],
            "cut": pa.array(["c", "z", None]).dictionary_encode(),
            "prediction": [1.0, 2.0, 3.0],
        }
    )
    x = design_matrix(table, card().features)
    np.testing.assert_array_equal(
        x, [[1.0, 60.0, 2.0, 1.0], [2.0, np.nan, np.nan, 2.0], [np.nan, 61.0, np.nan, 3.0]]
    )


# fitting and estimating ----------------------------------------------------------------------


def test_the_estimator_follows_a_covariate_shift_that_raises_the_error(reference: pa.Table):
    estimator = fit_loss_estimator(reference, card().features, "price")
    assert estimator is not None
    accuracy = estimator.accuracy
    assert accuracy.fit_rows + accuracy.holdout_rows == 3000 and accuracy.holdout_rows == 900
    assert abs(accuracy.mae_relative_error) < 0.1
    for carat_mean in (1.0, 1.4):  # larger stones: larger errors, the same relation
        batch = scored(2000, seed=7, carat_mean=carat_mean)
        estimate = estimate_performance(estimator, batch.drop_columns(["price"]))
        assert estimate is not None
        assert estimate.mae_lower <= realized_mae(batch) <= estimate.mae_upper
    assert estimate.mae > 1.5 * accuracy.realized_mae


def test_no_rows_or_no_estimator_means_no_estimate(reference: pa.Table):
    estimator = fit_loss_estimator(reference, card().features, "price")
    assert estimate_performance(estimator, scored(0, seed=1)) is None
    assert estimate_performance(None, scored(10, seed=1)) is None
    assert fit_loss_estimator(scored(99, seed=1), card().features, "price") is None


# registration, integrity, old versions -------------------------------------------------------


def test_registration_stores_the_estimator_hashed_in_the_card_with_its_held_out_accuracy(
    tmp_path: Path, reference: pa.Table
):
    registry, registered = register(tmp_path, reference, with_estimator=True)
    assert LOSS_ESTIMATOR_FILE in registered.sha256
    entry = registered.extra[EXTRA_KEY]
    assert entry["file"] == LOSS_ESTIMATOR_FILE and entry["holdout_share"] == 0.3
    assert entry["accuracy"]["holdout_rows"] == 900
    loaded = load_loss_estimator(registry, registry.card("toy"))
    assert loaded is not None and loaded.accuracy.to_dict() == entry["accuracy"]
    assert not (tmp_path / ".cache").exists()  # nothing fitted at run time


@pytest.mark.slow  # trains the diamonds model once per session
def test_diamonds_train_registers_an_estimator_the_nightly_context_loads(diamonds_registry: Path):
    registry = Registry.open(str(diamonds_registry))
    card_ = registry.card("diamonds-price")
    assert LOSS_ESTIMATOR_FILE in card_.sha256
    accuracy = card_.extra[EXTRA_KEY]["accuracy"]
    assert abs(accuracy["mae_relative_error"]) < 0.1
    assert 0 < accuracy["level_error"] < 0.05
    context = inputs.load_model_context(registry, "diamonds-price")
    assert context.loss_estimator is not None
    assert not (diamonds_registry / ".cache" / "loss_estimators").exists()  # none fitted again


def test_a_tampered_estimator_is_refused_before_unpickling_with_how_to_re_register(
    tmp_path: Path, reference: pa.Table
):
    registry, _ = register(tmp_path / "registry", reference, with_estimator=True)
    stored = tmp_path / "registry" / "toy" / "v1" / LOSS_ESTIMATOR_FILE
    stored.write_bytes(EVIL.replace(b"{marker}", str(tmp_path / "pwned").encode()))
    with pytest.raises(InputError) as err:
        inputs.load_model_context(registry, "toy")
    assert err.value.exit_code == 2
    message = str(err.value)
    assert str(stored) in message and "does not match its card" in message
    assert "driftline register" in message
    assert not (tmp_path / "pwned").exists()


def test_a_card_that_lost_the_estimators_hash_is_refused(tmp_path: Path, reference: pa.Table):
    registry, registered = register(tmp_path, reference, with_estimator=True)
    sha256 = {k: v for k, v in registered.sha256.items() if k != LOSS_ESTIMATOR_FILE}
    with pytest.raises(InputError, match="missing from the registry or its card; re-register"):
        load_loss_estimator(registry, replace(registered, sha256=sha256))


def test_an_old_version_gets_an_estimator_fitted_once_and_cached_outside_its_directory(
    tmp_path: Path, reference: pa.Table
):
    registry, registered = register(tmp_path, reference, with_estimator=False)
    version_files = sorted(p.name for p in (tmp_path / "toy" / "v1").iterdir())
    first = load_loss_estimator(registry, registered)
    assert first is not None
    cached = sorted(p.suffix for p in (tmp_path / ".cache" / "loss_estimators").iterdir())
    assert cached == [".joblib", ".json"]
    assert sorted(p.name for p in (tmp_path / "toy" / "v1").iterdir()) == version_files
    # the second run reads the cache: the reference itself is no longer needed
    (tmp_path / "toy" / "v1" / "reference.parquet").unlink()
    again = load_loss_estimator(registry, registered)
    assert again is not None and again.accuracy == first.accuracy
    batch = scored(500, seed=4)
    assert estimate_performance(again, batch) == estimate_performance(first, batch)


def test_a_tampered_cache_entry_is_fitted_again_never_unpickled(
    tmp_path: Path, reference: pa.Table
):
    registry, registered = register(tmp_path / "registry", reference, with_estimator=False)
    first = load_loss_estimator(registry, registered)
    [entry] = (tmp_path / "registry" / ".cache" / "loss_estimators").glob("*.joblib")
    entry.write_bytes(EVIL.replace(b"{marker}", str(tmp_path / "pwned").encode()))
    again = load_loss_estimator(registry, registered)
    assert not (tmp_path / "pwned").exists()
    assert again is not None and first is not None and again.accuracy == first.accuracy
    assert b"system" not in entry.read_bytes()  # the entry was fitted and written again


def test_a_version_with_too_few_labelled_rows_has_no_estimator_and_no_estimate(tmp_path: Path):
    small = scored(60, seed=2)
    registry, registered = register(tmp_path, small, with_estimator=True)
    assert LOSS_ESTIMATOR_FILE not in registered.sha256
    assert "fewer than 100" in registered.extra[EXTRA_KEY]["skipped"]
    context = inputs.load_model_context(registry, "toy")
    assert context.loss_estimator is None
    assert not (tmp_path / ".cache" / "loss_estimators").exists()


@pytest.mark.slow  # trains the diamonds model once per session
def test_monitor_day_writes_the_estimate_of_the_batch_into_the_result(trained_env):
    from datetime import date

    from core.settings import load_settings
    from data_lake.lake import Lake
    from driftline import commands

    settings = load_settings(trained_env)
    commands.simulate(
        settings, model="diamonds-price", start=date(2026, 2, 1), days=1, rows_per_day=500,
        scenario="none", seed=3,
    )  # fmt: skip
    registry = Registry.open(settings.model_registry_uri)
    context = inputs.load_model_context(registry, "diamonds-price")
    result = monitoring.run_day(
        Lake.open(settings.data_lake_uri), context, date(2026, 2, 1), settings
    ).result
    assert isinstance(result.estimate, PerformanceEstimate)
    assert result.estimate.n_rows == result.estimate.n_sampled == 500
    baseline = registry.card("diamonds-price").metrics.mae
    assert result.estimate.mae_lower < baseline * 1.2 and result.estimate.mae_upper > baseline * 0.8

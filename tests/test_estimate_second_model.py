"""A model and table the project never saw get the estimated performance with no code change."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from driftline.cli import main
from model_registry.registry import Registry
from tasks.day import engine as monitoring
from tasks.day import inputs
from tasks.export.catalogue import RunStamp, metric_families
from tests.test_second_model import write_energy_model

pytestmark = pytest.mark.slow  # fits a model, simulates and monitors six days

MODEL = "house-energy"
START = date(2026, 5, 1)
DAYS = 6


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, dict[date, float]]:
    """`driftline register` of the energy model, six simulated days with data drift from day 4,
    each day monitored as the nightly run does, and each day's MAE once every label is in."""
    root = tmp_path_factory.mktemp("energy")
    env = {"DATA_LAKE_URI": str(root / "lake"), "MODEL_REGISTRY_URI": str(root / "registry")}
    write_energy_model(root)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        code = main([
            "register", "--model", MODEL, "--artifact", str(root / "energy.joblib"),
            "--reference", str(root / "energy-reference.parquet"),
            "--target", "kwh_per_month", "--categorical", "region,has_heat_pump",
        ])  # fmt: skip
    assert code == 0
    settings = load_settings(env)
    commands.simulate(
        settings, model=MODEL, start=START, days=DAYS, rows_per_day=2000,
        scenario="data-drift", seed=5, drift_start=START + timedelta(days=3),
    )  # fmt: skip
    lake = Lake.open(settings.data_lake_uri)
    context = inputs.load_model_context(Registry.open(settings.model_registry_uri), MODEL)
    results = [
        monitoring.run_day(lake, context, START + timedelta(days=i), settings).result
        for i in range(DAYS)
    ]
    later = START + timedelta(days=DAYS + 8)  # every label has arrived
    window = inputs.read_window(lake, context.card, later, later, window_days=30)
    realized = {p.batch_date: p.metrics.mae for p in window.performance(later).batches if p.metrics}
    return root, results, realized


def test_register_fits_the_estimator_for_the_new_model_and_hashes_it(monitored):
    root, _, _ = monitored
    card = json.loads((root / "registry" / MODEL / "v1" / "card.json").read_text())
    assert "loss_estimator.joblib" in card["sha256"]
    accuracy = card["extra"]["loss_estimator"]["accuracy"]
    assert accuracy["holdout_rows"] == 900
    assert abs(accuracy["mae_relative_error"]) < 0.1


def test_every_day_gets_an_estimate_close_to_the_mae_its_labels_later_show(monitored):
    _, results, realized = monitored
    for result in results:
        estimate = result.estimate
        assert estimate is not None, result.batch_date
        actual = realized[result.batch_date]
        assert abs(estimate.mae - actual) / actual < 0.15, (result.batch_date, estimate, actual)
        assert estimate.mae_lower < estimate.mae < estimate.mae_upper


def test_the_new_model_pushes_the_same_estimated_gauges(monitored):
    _, results, _ = monitored
    names = {family.name for family in metric_families(results[-1], RunStamp(0.0, 0.0))}
    assert {
        "ml_model_estimated_mae", "ml_model_estimated_mae_lower",
        "ml_model_estimated_mae_upper", "ml_model_estimated_rmse",
    } <= names  # fmt: skip
    assert np.isfinite(results[-1].estimate.rmse)

"""The simulated scenarios, monitored day by day with the nightly run's plain functions."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.registry import Registry
from tasks.day.engine import run_day
from tasks.day.inputs import load_model_context

# sixteen simulated days of 1,500 rows monitored per scenario: ~20 s on 2 cores
pytestmark = pytest.mark.slow

START = date(2026, 6, 1)
DAYS = 16
DRIFT_START = START + timedelta(days=8)
SIZE = {"carat", "x", "y", "z"}


def monitored(tmp_path: Path, registry: Path, scenario: str, rows: int = 1500) -> list:
    shutil.copytree(registry, tmp_path / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(tmp_path / "lake"), "MODEL_REGISTRY_URI": str(tmp_path / "registry")}
    )
    commands.simulate(settings, model="diamonds-price", start=START, days=DAYS, rows_per_day=rows,
                      scenario=scenario, seed=11, drift_start=DRIFT_START)  # fmt: skip
    context = load_model_context(Registry.open(settings.model_registry_uri), "diamonds-price")
    lake = Lake.open(settings.data_lake_uri)
    return [run_day(lake, context, START + timedelta(days=i), settings).result for i in range(DAYS)]


def test_data_drift_flags_the_shifted_size_features_from_the_drift_day_only(
    tmp_path: Path, diamonds_registry: Path
):
    results = monitored(tmp_path, diamonds_registry, "data-drift")
    for r in results:
        drifted = set(r.drifted_features)
        if r.batch_date < DRIFT_START:
            assert drifted == set(), r.batch_date
            assert not r.prediction.is_drifted
        else:
            assert drifted == SIZE, r.batch_date  # depth, table, cut, color, clarity stay put
            assert r.prediction.is_drifted


def test_concept_drift_moves_no_feature_but_lifts_mae_once_labels_are_in(
    tmp_path: Path, diamonds_registry: Path
):
    results = monitored(tmp_path, diamonds_registry, "concept-drift")
    assert all(r.drifted_features == [] for r in results)
    ratios = {}
    for r in results:
        current = r.current_performance
        if current is not None:
            ratios[current.batch_date] = current.metrics.mae / r.baseline.mae
    assert ratios, "no batch ever reached 80 % label coverage"
    before = [v for d, v in ratios.items() if d < DRIFT_START]
    after = [v for d, v in ratios.items() if d >= DRIFT_START]
    assert before and max(before) < 1.2
    assert after and min(after) > 1.2


def test_performance_waits_for_80_percent_of_the_labels(tmp_path: Path, diamonds_registry: Path):
    results = monitored(tmp_path, diamonds_registry, "none", rows=400)
    first = results[0]
    # the run for day 1 sees only the labels that arrived the next day
    assert first.current_performance is None
    assert 0.2 < first.performance[0].label_coverage_ratio < 0.45
    late = results[-1]
    assert late.current_performance is not None
    lag = (late.batch_date - late.current_performance.batch_date).days
    assert 3 <= lag <= 6
    assert late.current_performance.label_coverage_ratio >= 0.8


@pytest.mark.parametrize("scenario", ["none", "both"])
def test_the_same_seed_gives_the_same_rows(tmp_path: Path, diamonds_registry: Path, scenario):
    shutil.copytree(diamonds_registry, tmp_path / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(tmp_path / "lake"), "MODEL_REGISTRY_URI": str(tmp_path / "registry")}
    )
    batch = tmp_path / "lake/scored/model=diamonds-price/batch_date=2026-06-02/part-0.parquet"
    snapshots = []
    for _ in range(2):
        commands.simulate(settings, model="diamonds-price", start=START, days=2, rows_per_day=50,
                          scenario=scenario, seed=4)  # fmt: skip
        snapshots.append(pq.read_table(batch))
    assert snapshots[0].equals(snapshots[1])

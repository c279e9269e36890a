"""Any registered regressor and feature set runs through the same commands, no code change."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from driftline.cli import main

MODEL = "house-energy"


def energy_table(rows: int, seed: int) -> pd.DataFrame:
    """Household energy use: other names, a mix of numeric, integer, text and boolean columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "floor_area_m2": rng.gamma(6.0, 20.0, rows),
            "occupants": rng.integers(1, 6, rows),
            "region": rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "has_heat_pump": rng.uniform(size=rows) < 0.3,
        }
    )
    frame["kwh_per_month"] = (
        2.1 * frame["floor_area_m2"]
        + 40 * frame["occupants"]
        + frame["region"].map({"north": 90, "south": 10, "east": 40, "west": 30})
        - 60 * frame["has_heat_pump"]
        + rng.normal(0, 15, rows)
    )
    return frame


def write_energy_model(directory: Path) -> None:
    """A fitted energy pipeline as energy.joblib and its out-of-sample rows as
    energy-reference.parquet in `directory`, as a team outside driftline would hand them over."""
    train, reference = energy_table(4000, seed=1), energy_table(3000, seed=2)
    features = ["floor_area_m2", "occupants", "region", "has_heat_pump"]
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["region", "has_heat_pump"]),
            remainder="passthrough",
        ),
        HistGradientBoostingRegressor(random_state=0),
    ).fit(train[features], train["kwh_per_month"])
    joblib.dump(model, directory / "energy.joblib")
    reference.to_parquet(directory / "energy-reference.parquet")


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    monkeypatch.setenv("DATA_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("MODEL_REGISTRY_URI", str(tmp_path / "registry"))
    monkeypatch.setenv("PUSHGATEWAY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DRIFTLINE_PUSH_RETRY_DELAYS", "0")
    write_energy_model(tmp_path)
    code = main([
        "register", "--model", MODEL, "--artifact", str(tmp_path / "energy.joblib"),
        "--reference", str(tmp_path / "energy-reference.parquet"),
        "--target", "kwh_per_month", "--categorical", "region,has_heat_pump",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    return tmp_path


@pytest.mark.slow
def test_register_describes_the_features_and_computes_holdout_metrics(registered: Path):
    card = json.loads((registered / "registry" / MODEL / "v1" / "card.json").read_text())
    kinds = {f["name"]: f["kind"] for f in card["features"]}
    assert kinds == {
        "floor_area_m2": "numeric", "occupants": "numeric",
        "region": "categorical", "has_heat_pump": "categorical",
    }  # fmt: skip
    assert card["target"] == "kwh_per_month"
    assert 5 < card["metrics"]["mae"] < 30 and card["metrics"]["r2"] > 0.9


@pytest.mark.slow
@pytest.mark.prefect
def test_the_second_model_simulates_and_monitors_with_the_same_commands(registered: Path, capsys):
    simulate = ["simulate", "--model", MODEL, "--start", "2026-05-01", "--days", "4",
                "--rows-per-day", "1500", "--scenario", "data-drift", "--seed", "5"]  # fmt: skip
    assert main(simulate) == 0
    for day in ("2026-05-01", "2026-05-04"):
        assert main(["monitor", "--model", MODEL, "--date", day, "--no-push"]) == 0
    capsys.readouterr()
    results = registered / "lake" / "monitoring" / f"model={MODEL}"
    before = json.loads((results / "batch_date=2026-05-01" / "result.json").read_text())
    after = json.loads((results / "batch_date=2026-05-04" / "result.json").read_text())
    tests = {f["feature"]: f["test"] for f in after["features"]}
    assert tests == {
        "floor_area_m2": "ks", "occupants": "ks", "region": "chi2", "has_heat_pump": "chi2",
    }  # fmt: skip
    assert [f["feature"] for f in before["features"] if f["is_drifted"]] == []
    drifted = [f["feature"] for f in after["features"] if f["is_drifted"]]
    assert drifted == ["floor_area_m2"]  # the simulated shift tilts the first numeric feature

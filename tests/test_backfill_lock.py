"""A backfill takes the same per-day lock as the nightly run."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from driftline.cli import main


@pytest.mark.prefect
def test_a_day_held_by_another_run_is_listed_as_failed_and_the_rest_complete(
    tmp_path: Path, diamonds_registry: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    shutil.copytree(diamonds_registry, tmp_path / "registry")
    env = {
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
        "PROMETHEUS_URL": "http://127.0.0.1:9",
        "DRIFTLINE_LOCK_WAIT_SECONDS": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(env)
    commands.simulate(settings, model="diamonds-price", start=date(2026, 7, 1), days=3,
                      rows_per_day=100, scenario="none", seed=1)  # fmt: skip
    lake = Lake.open(settings.data_lake_uri)
    held = date(2026, 7, 2)
    with lake.day_lock("diamonds-price", held, purpose="monitor diamonds-price 2026-07-02"):
        code = main(["backfill", "--start", "2026-07-01", "--end", "2026-07-03"])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 of 3 day(s) replayed" in out
    assert "2026-07-02 failed:" in out and "monitor diamonds-price 2026-07-02" in out
    assert lake.result_dates("diamonds-price") == [date(2026, 7, 1), date(2026, 7, 3)]

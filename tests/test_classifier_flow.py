"""A classifier through the nightly flow: `driftline monitor` (Prefect, in-process) pushes its
class shares, realized and estimated metrics and none of a regressor's performance series."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.settings import load_settings
from driftline import commands
from driftline.cli import main
from tests.pushgateway_recorder import recording_pushgateway

START = date(2026, 3, 1)


@pytest.mark.prefect
def test_driftline_monitor_pushes_a_classifiers_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake, registry = tmp_path / "lake", tmp_path / "registry"
    settings = load_settings({"DATA_LAKE_URI": str(lake), "MODEL_REGISTRY_URI": str(registry)})
    commands.train_classifier(settings, model="tumours")
    commands.simulate(settings, model="tumours", start=START, days=8, rows_per_day=300,
                      scenario="none", seed=2)  # fmt: skip
    day = START + timedelta(days=7)
    with recording_pushgateway() as gateway:
        monkeypatch.setenv("DATA_LAKE_URI", str(lake))
        monkeypatch.setenv("MODEL_REGISTRY_URI", str(registry))
        monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
        code = main(["monitor", "--model", "tumours", "--date", day.isoformat()])
        assert code == 0, capsys.readouterr().err
    ((method, path, body),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/ml_monitoring/model/tumours")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {
        "ml_prediction_class_share", "ml_model_accuracy", "ml_model_roc_auc",
        "ml_model_baseline_accuracy", "ml_model_estimated_accuracy",
        "ml_model_estimated_roc_auc_lower", "ml_prediction_drift_score",
    } <= names  # fmt: skip
    assert not names & {"ml_model_mae", "ml_model_baseline_mae", "ml_model_estimated_mae"}
    assert b'ml_prediction_class_share{class="0",model_version="v1"}' in body

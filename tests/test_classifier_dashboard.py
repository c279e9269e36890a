"""The dashboard's classifier row: collapsed (a regressor has none of its series), and reading
only gauges the catalogue pushes, with last_over_time over 26 h."""

from __future__ import annotations

import json
import re
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

import driftline
from core.settings import load_settings
from driftline import commands
from tasks.export.catalogue import CATALOGUE
from tests.procs import wait_for
from tests.stack_fixtures import LiveStack, prom_query, prom_query_range

DASHBOARD = Path(__file__).parents[1] / "infra/grafana/dashboards/driftline-model-monitoring.json"
MODEL = "live-classifier"


def test_the_classifier_row_pictures_class_shares_accuracy_and_roc_auc_from_pushed_gauges() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Classifiers"]
    assert row["collapsed"] is True
    titles = {p["title"] for p in row["panels"]}
    assert titles == {
        "Predicted class shares",
        "Accuracy and ROC AUC vs baseline",
        "Estimated vs realized accuracy and ROC AUC",
    }
    pushed = {gauge.name for gauge in CATALOGUE}
    for panel in row["panels"]:
        assert panel["datasource"]["uid"] == "driftline-prometheus"
        for target in panel["targets"]:
            names = set(re.findall(r"\b(ml_[a-z_]+)\{", target["expr"]))
            assert names and names <= pushed, target["expr"]
            assert "[26h]" in target["expr"] and "last_over_time" in target["expr"]


@pytest.mark.e2e
def test_every_classifier_panel_query_returns_data_from_a_live_prometheus(
    live_stack: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, registry = str(tmp_path / "lake"), str(tmp_path / "registry")
    settings = load_settings({"DATA_LAKE_URI": lake, "MODEL_REGISTRY_URI": registry})
    commands.train_classifier(settings, model=MODEL)
    start = date(2026, 3, 1)
    commands.simulate(
        settings, model=MODEL, start=start, days=10, rows_per_day=400,
        scenario="data-drift", seed=5, drift_start=start + timedelta(days=6),
    )  # fmt: skip
    monkeypatch.setenv("PUSHGATEWAY_URL", live_stack.pushgateway_url)
    result = driftline.monitor_day(
        MODEL, start + timedelta(days=9), push=True, lake=lake, registry=registry
    )
    assert result.class_shares and result.class_estimate is not None
    selector = f'ml_model_estimated_accuracy{{job="ml_monitoring",model="{MODEL}"}}'
    wait_for(
        lambda: prom_query(live_stack.prometheus_url, selector),
        timeout_seconds=60,
        what="Prometheus to scrape the classifier's push",
    )
    (row,) = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "row"]
    now = time.time()
    empty = [
        f"{panel['title']}: {target['expr']}"
        for panel in row["panels"]
        for target in panel["targets"]
        if not [
            value
            for series in prom_query_range(
                live_stack.prometheus_url,
                target["expr"].replace("$model", MODEL),
                start=now - 900,
                end=now,
                step_seconds=15,
            )
            for _, value in series["values"]
            if value not in {"NaN", "+Inf", "-Inf"}
        ]
    ]
    assert not empty, empty

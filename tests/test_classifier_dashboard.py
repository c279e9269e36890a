"""The dashboard's classifier row: collapsed (a regressor has none of its series), and reading
only gauges the catalogue pushes, with last_over_time over 26 h."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.export.catalogue import CATALOGUE

DASHBOARD = Path(__file__).parents[1] / "infra/grafana/dashboards/driftline-model-monitoring.json"


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

"""The Grafana dashboard: sound JSON, provisioned datasources, and every panel showing data."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack_fixtures import (
    MonitoredStack,
    prom_label_values,
    prom_query,
    prom_query_range,
    wait_for,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
GRAFANA = REPO_ROOT / "infra" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "driftline-model-monitoring.json").read_text())
DATASOURCES = yaml.safe_load(
    (GRAFANA / "provisioning" / "datasources" / "driftline.yml").read_text()
)["datasources"]
PROMETHEUS_DS = next(ds for ds in DATASOURCES if ds["type"] == "prometheus")
PANELS: list[dict[str, Any]] = DASHBOARD["panels"]
QUERY_PANELS = [panel for panel in PANELS if panel.get("targets")]
VARIABLES = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}
GRAFANA_BUILTINS = {"__range", "__interval", "__rate_interval", "__range_s", "__interval_ms"}
VARIABLE_REF = re.compile(r"\$\{?(\w+)")


def panel_id(panel: dict[str, Any]) -> str:
    return str(panel["title"])


# --- static -------------------------------------------------------------------------------------


def test_datasources_have_fixed_uids_and_alertmanager_is_provisioned() -> None:
    by_uid = {ds["uid"]: ds for ds in DATASOURCES}
    assert by_uid["driftline-prometheus"]["type"] == "prometheus"
    assert by_uid["driftline-prometheus"]["url"] == "http://prometheus:9090"
    alertmanager = by_uid["driftline-alertmanager"]
    assert alertmanager["type"] == "alertmanager"
    assert alertmanager["jsonData"]["implementation"] == "prometheus"
    assert alertmanager["url"] == "http://alertmanager:9093"


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids)), ids


def test_every_panel_and_target_uses_the_provisioned_prometheus_uid() -> None:
    expected = {"type": "prometheus", "uid": PROMETHEUS_DS["uid"]}
    for panel in PANELS:
        assert panel["datasource"] == expected, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == expected, f"{panel['title']} {target['refId']}"
    for variable in VARIABLES.values():
        assert variable["datasource"] == expected, variable["name"]


def test_alert_list_reads_the_provisioned_prometheus_rules_for_the_selected_model() -> None:
    (alert_list,) = [panel for panel in PANELS if panel["type"] == "alertlist"]
    assert alert_list["options"]["datasource"] == PROMETHEUS_DS["name"]
    assert alert_list["options"]["stateFilter"]["firing"] is True
    assert alert_list["options"]["alertInstanceLabelFilter"] == '{model="$model"}'


def test_every_variable_reference_resolves() -> None:
    texts = [t["expr"] for panel in QUERY_PANELS for t in panel["targets"]]
    texts += [p["options"].get("alertInstanceLabelFilter", "") for p in PANELS if "options" in p]
    for text in texts:
        for name in VARIABLE_REF.findall(text):
            assert name in VARIABLES or name in GRAFANA_BUILTINS, f"${name} in {text}"


def test_variables_only_depend_on_variables_defined_before_them() -> None:
    defined: set[str] = set()
    for variable in DASHBOARD["templating"]["list"]:
        assert variable["query"].startswith("label_values("), variable["name"]
        for name in VARIABLE_REF.findall(variable["query"]):
            assert name in defined, f"{variable['name']} uses ${name} before it is defined"
        defined.add(variable["name"])
    assert list(VARIABLES) == ["model", "feature"]
    assert VARIABLES["feature"]["includeAll"] and VARIABLES["feature"]["allValue"] == ".*"


def test_panels_fit_the_grid_and_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in PANELS:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_review_opens_on_thirty_days_so_a_drift_onset_weeks_ago_shows() -> None:
    # the demo simulates the 21 days up to yesterday with drift from day 11
    assert DASHBOARD["time"] == {"from": "now-30d", "to": "now"}
    assert DASHBOARD["uid"] == "driftline-model-monitoring"


ANNOTATIONS = {a["name"]: a for a in DASHBOARD["annotations"]["list"]}


def test_annotations_mark_production_versions_and_firing_alerts() -> None:
    assert set(ANNOTATIONS) == {"Production version", "Alerts firing"}
    expected = {"type": "prometheus", "uid": PROMETHEUS_DS["uid"]}
    for annotation in ANNOTATIONS.values():
        assert annotation["datasource"] == expected, annotation["name"]
        assert annotation["enable"] and not annotation["hide"], annotation["name"]
        for name in VARIABLE_REF.findall(annotation["expr"]):
            assert name in VARIABLES, f"${name} in {annotation['expr']}"
    version = ANNOTATIONS["Production version"]
    # a version's series that was not there a day before: a new production version
    assert "unless" in version["expr"] and "offset 1d" in version["expr"]
    assert "{{model_version}}" in version["titleFormat"]
    assert 'alertstate="firing"' in ANNOTATIONS["Alerts firing"]["expr"]
    assert "{{alertname}}" in ANNOTATIONS["Alerts firing"]["titleFormat"]


def test_history_is_read_with_last_over_time_26h() -> None:
    # Backfilled history has one sample per day; a plain selector would show gaps.
    metric = re.compile(r"(\w+\()?(ml_\w+)\{[^}]*\}(\[\w+\])?")
    for panel in QUERY_PANELS:
        for target in panel["targets"]:
            for function, name, window in metric.findall(target["expr"]):
                allowed = {("last_over_time(", "[26h]"), ("max_over_time(", "[30d]")}
                assert (function, window) in allowed, f"{panel['title']}: {name} read raw"


def test_the_review_panels_are_all_there() -> None:
    by_type: dict[str, set[str]] = {}
    for panel in PANELS:
        by_type.setdefault(panel["type"], set()).add(panel["title"])
    assert by_type["stat"] == {
        "Drifted features now",
        "Time since last successful run",
        "MAE / baseline MAE",
        "Label coverage",
    }
    assert {
        "Drift score by feature",
        "Prediction drift",
        "Performance vs baseline",
        "Batch volume",
        "Missing values by feature",
        "Data-quality findings",
    } <= by_type["timeseries"]
    assert by_type["table"] == {"Drift tests on the newest batch", "Policy"}
    assert by_type["alertlist"] == {"Firing alerts"}


def test_policy_panel_shows_the_policy_version_and_which_features_are_muted() -> None:
    (panel,) = [p for p in PANELS if p["title"] == "Policy"]
    exprs = " ".join(t["expr"] for t in panel["targets"])
    assert "by (policy_version)" in exprs and "ml_policy_info{" in exprs
    assert "ml_feature_drift_muted{" in exprs
    (muted,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "muted"]
    (mappings,) = [p["value"] for p in muted["properties"] if p["id"] == "mappings"]
    assert mappings[0]["options"]["1"]["text"] == "MUTED"


def test_data_quality_panel_shows_the_findings_and_the_checks_that_found_one() -> None:
    (panel,) = [p for p in PANELS if p["title"] == "Data-quality findings"]
    exprs = [t["expr"] for t in panel["targets"]]
    assert any("ml_data_quality_issues{" in e for e in exprs)
    # "> bool 0": a clean check counts 0, so the panel has data on a clean night too
    assert any("ml_data_quality_issue{" in e and "> bool 0" in e for e in exprs)


def test_drift_score_panel_draws_the_min_score_line_at_0_1() -> None:
    (panel,) = [p for p in PANELS if p["title"] == "Drift score by feature"]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"].startswith("line")
    assert [step["value"] for step in defaults["thresholds"]["steps"]] == [None, 0.1]


# --- live: every query of every panel returns data from the pipeline's metrics ------------------


def substitute(expr: str, *, model: str, feature_regex: str) -> str:
    """Expand the dashboard variables the way Grafana would."""
    values = {
        "model": model,
        "feature": feature_regex,
        "__range": "30d",
        "__range_s": "2592000",
        "__interval": "5m",
        "__interval_ms": "300000",
        "__rate_interval": "5m",
    }
    return VARIABLE_REF.sub(lambda m: values[m.group(1)], expr)


@pytest.mark.prefect
@pytest.mark.e2e
def test_dashboard_variables_resolve_against_live_prometheus(
    monitored_stack: MonitoredStack,
) -> None:
    url = monitored_stack.live.prometheus_url
    model_selector = 'ml_batch_timestamp_seconds{job="ml_monitoring"}'
    assert monitored_stack.model in prom_label_values(url, "model", model_selector)
    feature_selector = substitute(
        'ml_feature_drift_score{job="ml_monitoring",model="$model"}',
        model=monitored_stack.model,
        feature_regex=".*",
    )
    assert "carat" in prom_label_values(url, "feature", feature_selector)


@pytest.mark.prefect
@pytest.mark.e2e
@pytest.mark.parametrize("feature_regex", [".*", "carat"], ids=["all-features", "carat"])
@pytest.mark.parametrize("panel", QUERY_PANELS, ids=panel_id)
def test_every_panel_query_returns_data(
    monitored_stack: MonitoredStack, panel: dict[str, Any], feature_regex: str
) -> None:
    url = monitored_stack.live.prometheus_url
    now = time.time()
    empty = []
    for target in panel["targets"]:
        expr = substitute(target["expr"], model=monitored_stack.model, feature_regex=feature_regex)
        if target.get("instant"):
            result = prom_query(url, expr, at=now)
            values = [sample["value"][1] for sample in result]
        else:
            # The live data is minutes old: a 15-minute window with Grafana-like steps.
            result = prom_query_range(url, expr, start=now - 900, end=now, step_seconds=15)
            values = [v for series in result for _, v in series["values"]]
        if not [v for v in values if v not in {"NaN", "+Inf", "-Inf"}]:
            empty.append(f"{target['refId']}: {expr}")
    assert not empty, f"panel {panel['title']!r} shows no data for: {empty}"


@pytest.mark.prefect
@pytest.mark.e2e
def test_alert_list_panel_has_firing_alerts_to_show(monitored_stack: MonitoredStack) -> None:
    url = monitored_stack.live.prometheus_url
    # the rules fire after their `for:` (seconds on the test stack; longer on a busy machine)
    wait_for(
        lambda: prom_query(url, f'ALERTS{{alertstate="firing",model="{monitored_stack.model}"}}'),
        timeout_seconds=60,
        what="a firing alert: the Firing alerts panel would be empty for the drifted model",
    )


@pytest.mark.prefect
@pytest.mark.e2e
@pytest.mark.parametrize("annotation", sorted(ANNOTATIONS))
def test_every_annotation_query_marks_something(
    monitored_stack: MonitoredStack, annotation: str
) -> None:
    url = monitored_stack.live.prometheus_url
    expr = substitute(
        ANNOTATIONS[annotation]["expr"], model=monitored_stack.model, feature_regex=".*"
    )
    # firing needs the rules' `for:`; the fixture's stack fires within seconds
    wait_for(
        lambda: prom_query(url, expr),
        timeout_seconds=60,
        what=f"annotation {annotation!r} to mark something: {expr}",
    )

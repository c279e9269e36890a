"""Simulated drift -> monitor push -> Prometheus rule -> Alertmanager -> the on-call webhook."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.procs import wait_for
from tests.stack_fixtures import (
    SIM_LAST_DAY,
    LiveStack,
    MonitoredStack,
    driftline_env,
    prom_query,
    run_driftline,
)

pytestmark = pytest.mark.e2e


def drifted_features(monitored: MonitoredStack) -> set[str]:
    result = prom_query(
        monitored.live.prometheus_url,
        f'ml_feature_drift_detected{{job="ml_monitoring",model="{monitored.model}"}} == 1',
    )
    return {sample["metric"]["feature"] for sample in result}


def notification_receivers(live: LiveStack, alertname: str) -> set[str]:
    return {
        n["receiver"]
        for n in live.webhook.notifications()
        if any(a["labels"]["alertname"] == alertname for a in n["alerts"])
    }


@pytest.mark.prefect
def test_data_drift_notifies_feature_drift_for_each_drifted_feature(
    monitored_stack: MonitoredStack,
) -> None:
    drifted = drifted_features(monitored_stack)
    assert "carat" in drifted, f"the data-drift scenario shifts carat; drifted: {drifted}"
    for feature in sorted(drifted):
        alert = monitored_stack.live.webhook.wait_for_alert(
            "MLFeatureDrift", model=monitored_stack.model, feature=feature
        )
        description = alert["annotations"]["description"]
        assert feature in description
        assert f"on batch {SIM_LAST_DAY.isoformat()} 00:00:00" in description
    notified = {
        a["labels"]["feature"]
        for a in monitored_stack.live.webhook.alerts()
        if a["labels"]["alertname"] == "MLFeatureDrift"
        and a["labels"]["model"] == monitored_stack.model
    }
    assert notified == drifted, "only drifted features are notified"
    assert notification_receivers(monitored_stack.live, "MLFeatureDrift") == {"ml-team"}


@pytest.mark.prefect
def test_concept_drift_notifies_performance_degraded_to_on_call(
    monitored_stack: MonitoredStack,
) -> None:
    alert = monitored_stack.live.webhook.wait_for_alert(
        "MLPerformanceDegraded", model=monitored_stack.model
    )
    assert alert["labels"]["severity"] == "critical"
    (ratio,) = prom_query(
        monitored_stack.live.prometheus_url,
        f'ml_model_mae{{model="{monitored_stack.model}"}}'
        f' / ml_model_baseline_mae{{model="{monitored_stack.model}"}}',
    )
    (policy_ratio,) = prom_query(
        monitored_stack.live.prometheus_url,
        f'ml_policy_performance_alert_ratio{{model="{monitored_stack.model}"}}',
    )
    assert float(ratio["value"][1]) > float(policy_ratio["value"][1])
    assert "x its baseline" in alert["annotations"]["summary"]
    assert (
        f"alert above {float(policy_ratio['value'][1]):g} x" in alert["annotations"]["description"]
    )
    assert notification_receivers(monitored_stack.live, "MLPerformanceDegraded") == {"ml-oncall"}


@pytest.mark.prefect
def test_a_night_that_fails_on_bad_input_notifies_run_failed_until_a_good_night(
    monitored_stack: MonitoredStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    live, model = monitored_stack.live, monitored_stack.model
    # the same registry, and a lake whose batch of the day lacks a feature column
    bad_lake = tmp_path_factory.mktemp("bad-lake")
    env = {**driftline_env(live, monitored_stack.workdir), "DATA_LAKE_URI": str(bad_lake)}
    part = f"scored/model={model}/batch_date={SIM_LAST_DAY}"
    good, bad = monitored_stack.workdir / "lake" / part, bad_lake / part
    bad.mkdir(parents=True)
    for file in good.glob("*.parquet"):
        pq.write_table(pq.read_table(file).drop_columns(["carat"]), bad / file.name)
    failed = run_cli("monitor", "--date", SIM_LAST_DAY.isoformat(), env=env)
    assert failed.returncode == 2, failed.stderr
    assert "lacks column 'carat'" in failed.stderr

    alert = live.webhook.wait_for_alert("MLMonitoringRunFailed", model=model)
    assert (alert["labels"]["reason"], alert["labels"]["model_version"]) == ("input", "v1")
    assert "The last good run was at" in alert["annotations"]["description"]
    assert notification_receivers(live, "MLMonitoringRunFailed") == {"ml-oncall"}
    # the last good night's gauges stayed beside the failure
    assert prom_query(live.prometheus_url, f'ml_batch_rows{{job="ml_monitoring",model="{model}"}}')

    # the next good night replaces the group, the failure with it, and the alert resolves
    run_driftline(driftline_env(live, monitored_stack.workdir), "monitor", "--date",
                  SIM_LAST_DAY.isoformat())  # fmt: skip
    wait_for(
        lambda: [
            a
            for a in live.webhook.alerts("resolved")
            if a["labels"]["alertname"] == "MLMonitoringRunFailed" and a["labels"]["model"] == model
        ],
        timeout_seconds=60,
        what="MLMonitoringRunFailed to resolve after the good night",
    )


def push_group(live: LiveStack, model: str, metrics: dict[str, list[tuple[str, float]]]) -> None:
    """PUT one group to the Pushgateway the way the pipeline does (text exposition)."""
    lines = []
    for name, samples in metrics.items():
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{{{labels}}} {value}" for labels, value in samples)
    request = urllib.request.Request(
        f"{live.pushgateway_url}/metrics/job/ml_monitoring/model/{model}",
        data=("\n".join(lines) + "\n").encode(),
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in {200, 202}


def delete_group(live: LiveStack, model: str) -> None:
    """Remove a group this test pushed: the session's Pushgateway is shared with other tests."""
    request = urllib.request.Request(
        f"{live.pushgateway_url}/metrics/job/ml_monitoring/model/{model}", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in {200, 202}


def alertmanager_alerts(live: LiveStack, model: str) -> list[dict[str, Any]]:
    url = f"{live.alertmanager_url}/api/v2/alerts?filter=model%3D%22{model}%22"
    with urllib.request.urlopen(url, timeout=10) as response:
        alerts: list[dict[str, Any]] = json.load(response)
    return alerts


@pytest.fixture
def synthetic_models(live_stack: LiveStack) -> Iterator[list[str]]:
    """Models a test pushes groups for; their groups are deleted afterwards."""
    models: list[str] = []
    yield models
    for model in models:
        delete_group(live_stack, model)


def push_drift(live: LiveStack, model: str, features: list[str], drifted: set[str]) -> None:
    """Push a synthetic day of `model` on which the features in `drifted` drifted."""
    version = 'model_version="t"'
    push_group(
        live,
        model,
        {
            "ml_features_monitored": [(version, len(features))],
            "ml_features_drifted": [(version, len(drifted))],
            "ml_batch_timestamp_seconds": [(version, time.time() // 86400 * 86400)],
            "ml_feature_drift_detected": [
                (f'{version},feature="{f}"', 1 if f in drifted else 0) for f in features
            ],
            "ml_feature_drift_score": [
                (f'{version},feature="{f}",test="ks"', 0.4 if f in drifted else 0.01)
                for f in features
            ],
        },
    )


def feature_drift_notified(live: LiveStack, model: str) -> list[dict[str, Any]]:
    return [
        a
        for a in live.webhook.alerts()
        if a["labels"]["alertname"] == "MLFeatureDrift" and a["labels"]["model"] == model
    ]


def test_dataset_drift_holds_back_the_per_feature_notifications(
    live_stack: LiveStack, synthetic_models: list[str]
) -> None:
    model, control = "inhibition-check", "inhibition-control"
    features = ["a", "b", "c", "d", "e", "f"]
    synthetic_models.append(model)
    push_drift(live_stack, model, features, drifted={"a", "b", "c"})
    live_stack.webhook.wait_for_alert("MLDatasetDrift", model=model)

    def inhibited_feature_alerts() -> list[dict[str, Any]] | None:
        alerts = [
            a
            for a in alertmanager_alerts(live_stack, model)
            if a["labels"]["alertname"] == "MLFeatureDrift" and a["status"]["inhibitedBy"]
        ]
        return alerts if len(alerts) == 3 else None

    inhibited = wait_for(
        inhibited_feature_alerts, timeout_seconds=30, what="3 inhibited MLFeatureDrift alerts"
    )
    assert {a["labels"]["feature"] for a in inhibited} == {"a", "b", "c"}

    # A control model with one drifted feature (no dataset drift) reaches Alertmanager only now,
    # so its MLFeatureDrift group is flushed after the inhibited group's first flush: once its
    # notification arrives, the held-back group has had its turn to notify and sent nothing.
    synthetic_models.append(control)
    push_drift(live_stack, control, features, drifted={"a"})
    live_stack.webhook.wait_for_alert("MLFeatureDrift", model=control, feature="a")
    assert [a["labels"]["feature"] for a in feature_drift_notified(live_stack, control)] == ["a"]
    assert not feature_drift_notified(live_stack, model)


def test_performance_degraded_fires_above_the_models_own_policy_ratio_and_coverage(
    live_stack: LiveStack, synthetic_models: list[str]
) -> None:
    # a policy with performance_alert_ratio 1.5 and min_label_coverage 0.5: MAE at 1.6 x on a
    # half-labelled batch, which the engine pushed because it reached the policy's coverage
    model = "policy-lenient"
    synthetic_models.append(model)
    version = 'model_version="t"'
    push_group(
        live_stack,
        model,
        {
            "ml_model_mae": [(version, 160.0)],
            "ml_model_baseline_mae": [(version, 100.0)],
            "ml_label_coverage_ratio": [(version, 0.5)],
            "ml_performance_batch_timestamp_seconds": [(version, time.time() // 86400 * 86400)],
            "ml_policy_performance_alert_ratio": [(version, 1.5)],
            "ml_policy_estimate_alert_ratio": [(version, 1.5)],
            "ml_policy_info": [(f'{version},policy_version="p2"', 1.0)],
        },
    )
    alert = live_stack.webhook.wait_for_alert("MLPerformanceDegraded", model=model)
    assert alert["labels"]["model_version"] == "t"
    description = alert["annotations"]["description"]
    assert "alert above 1.5 x, policy p2" in description
    assert "label coverage 50%" in description

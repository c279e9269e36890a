"""The gauges of contract section 5, checked on the exposition a Pushgateway would receive."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tasks.export import catalogue as metrics
from tasks.export import pushgateway
from tasks.results.day import from_json, to_json
from tests import builders

RUN = metrics.RunStamp(finished_at_seconds=1_772_500_000.0, duration_seconds=3.5)


def _samples(result) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry_for(metrics.metric_families(result, RUN))).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_series_carries_model_version_and_drift_has_feature_and_test():
    samples = _samples(builders.result(shift=1.0))
    assert samples
    assert all(dict(labels).get("model_version") == "v1" for _, labels in samples)
    key = (
        "ml_feature_drift_score",
        (("feature", "carat"), ("model_version", "v1"), ("test", "ks")),
    )
    assert samples[key] > 0.5
    assert (
        samples[("ml_feature_drift_detected", (("feature", "carat"), ("model_version", "v1")))] == 1
    )
    assert (
        samples[("ml_feature_drift_detected", (("feature", "depth"), ("model_version", "v1")))] == 0
    )
    assert samples[("ml_features_monitored", (("model_version", "v1"),))] == 3
    assert samples[("ml_batch_timestamp_seconds", (("model_version", "v1"),))] == 1772409600.0
    assert samples[("ml_monitoring_run_duration_seconds", (("model_version", "v1"),))] == 3.5


def test_performance_is_exposed_only_once_a_batch_has_80_percent_of_its_labels():
    covered = _samples(builders.result(coverage=0.8))
    assert covered[("ml_label_coverage_ratio", (("model_version", "v1"),))] == 0.8
    assert covered[("ml_model_mae", (("model_version", "v1"),))] == 1.5
    assert covered[("ml_performance_batch_timestamp_seconds", (("model_version", "v1"),))] == (
        1772409600.0 - 5 * 86400
    )
    short = _samples(builders.result(coverage=0.79))
    assert not [k for k in short if k[0] in ("ml_model_mae", "ml_label_coverage_ratio")]
    assert short[("ml_model_baseline_mae", (("model_version", "v1"),))] == 1.0


def test_an_empty_batch_reports_zero_rows_and_no_drift_series():
    empty = builders.result(rows=0)
    samples = _samples(empty)
    assert samples[("ml_batch_rows", (("model_version", "v1"),))] == 0
    assert not [k for k in samples if "drift" in k[0]]


def test_promtool_check_metrics_is_clean_on_the_exposition():
    text = generate_latest(metrics.registry_for(metrics.metric_families(builders.result(), RUN)))
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""


def test_push_replaces_the_model_group_with_a_put():
    seen = {}

    def handler(url, method, timeout, headers, data):
        def send():
            seen.update(url=url, method=method, data=data)

        return send

    pushgateway.push(builders.result(), RUN, gateway="http://127.0.0.1:9091", handler=handler)
    assert seen["method"] == "PUT"
    assert seen["url"] == "http://127.0.0.1:9091/metrics/job/ml_monitoring/model/toy"
    assert b"ml_feature_drift_score" in seen["data"]


def test_basic_auth_is_sent_only_when_configured():
    assert pushgateway.auth_handler(None, None) is pushgateway.default_handler
    handler = pushgateway.auth_handler("monitor", "s3cret")
    assert handler.keywords == {"username": "monitor", "password": "s3cret"}


def test_results_survive_the_json_round_trip_including_nan():
    result = builders.result(rows=10)  # too few rows: scores are NaN
    again = from_json(to_json(result))
    assert to_json(again) == to_json(result)
    assert replace(again, features=(), prediction=None) == replace(
        result, features=(), prediction=None
    )
    assert all(f.status == "insufficient_data" for f in again.features)


@pytest.mark.parametrize("name", ["ml_model_mape", "ml_model_baseline_r2"])
def test_contract_names_are_present(name):
    assert any(k[0] == name for k in _samples(builders.result()))

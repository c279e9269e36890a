"""End to end: the pipeline pushes, a real Prometheus scrapes a real Pushgateway, and what
Prometheus returns equals an independent scipy computation on the same Parquet files."""

from __future__ import annotations

import subprocess
import urllib.request

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.policy import Policy
from tests.stack_fixtures import SIM_LAST_DAY, MonitoredStack, prom_query

pytestmark = [pytest.mark.e2e, pytest.mark.prefect]


def _series(stack: MonitoredStack, expr: str) -> dict[str, float]:
    rows = prom_query(stack.live.prometheus_url, expr)
    return {r["metric"].get("feature", ""): float(r["value"][1]) for r in rows}


def _frames(stack: MonitoredStack) -> tuple[pd.DataFrame, pd.DataFrame]:
    lake, registry = stack.workdir / "lake", stack.workdir / "registry"
    batch = pd.read_parquet(lake / "scored" / f"model={stack.model}" / f"batch_date={SIM_LAST_DAY}")
    reference = pd.read_parquet(registry / stack.model / "v1" / "reference.parquet")
    return batch, reference


NUMERIC = ["carat", "depth", "table", "x", "y", "z"]
CATEGORICAL = ["cut", "color", "clarity"]


def _scores_and_p_values(
    stack: MonitoredStack, test: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Per feature, the drift score and the p-value Prometheus holds for one test."""
    selector = f'model="{stack.model}",job="ml_monitoring",test="{test}"'
    return (
        _series(stack, f"ml_feature_drift_score{{{selector}}}"),
        _series(stack, f"ml_feature_drift_p_value{{{selector}}}"),
    )


def test_ks_scores_and_p_values_in_prometheus_equal_scipy(monitored_stack: MonitoredStack):
    batch, reference = _frames(monitored_stack)
    scores, p_values = _scores_and_p_values(monitored_stack, "ks")
    assert sorted(scores) == sorted(NUMERIC)
    for feature in NUMERIC:
        expected = stats.ks_2samp(reference[feature].dropna(), batch[feature].dropna())
        assert scores[feature] == pytest.approx(expected.statistic, abs=1e-12), feature
        assert p_values[feature] == pytest.approx(expected.pvalue, rel=1e-2, abs=1e-300), feature
    prediction = stats.ks_2samp(reference["prediction"], batch["prediction"])
    got = _series(monitored_stack, f'ml_prediction_drift_score{{model="{monitored_stack.model}"}}')
    assert got[""] == pytest.approx(prediction.statistic, abs=1e-12)


def test_chi2_p_values_and_total_variation_in_prometheus_equal_scipy(
    monitored_stack: MonitoredStack,
):
    batch, reference = _frames(monitored_stack)
    scores, p_values = _scores_and_p_values(monitored_stack, "chi2")
    assert sorted(scores) == sorted(CATEGORICAL)
    for feature in CATEGORICAL:
        counts = pd.concat(
            [
                reference[feature].astype(str).value_counts(),
                batch[feature].astype(str).value_counts(),
            ],
            axis=1,
        ).fillna(0)
        counts = counts[counts.sum(axis=1) > 0]
        table = counts.to_numpy().T
        assert p_values[feature] == pytest.approx(
            stats.chi2_contingency(table).pvalue, rel=1e-9, abs=1e-300
        ), feature
        shares = table / table.sum(axis=1, keepdims=True)
        assert scores[feature] == pytest.approx(
            0.5 * np.abs(shares[0] - shares[1]).sum(), abs=1e-12
        )


def test_the_last_day_shows_data_drift_and_its_row_count(monitored_stack: MonitoredStack):
    detected = _series(
        monitored_stack, f'ml_feature_drift_detected{{model="{monitored_stack.model}"}}'
    )
    assert detected["carat"] == 1
    assert {"depth", "table"} & {f for f, v in detected.items() if v == 1} == set()
    rows = _series(monitored_stack, f'ml_batch_rows{{model="{monitored_stack.model}"}}')
    assert rows == {"": 1000.0}


def test_concept_drift_lifts_mae_above_the_policy_ratio_of_baseline(
    monitored_stack: MonitoredStack,
):
    model = monitored_stack.model
    ratio = prom_query(
        monitored_stack.live.prometheus_url,
        f'ml_model_mae{{model="{model}"}} / ignoring() ml_model_baseline_mae{{model="{model}"}}',
    )
    # the model has no stored policy: the default one is pushed beside its gauges
    policy = Policy()
    assert _series(monitored_stack, f'ml_policy_performance_alert_ratio{{model="{model}"}}') == {
        "": policy.performance_alert_ratio
    }
    assert len(ratio) == 1 and float(ratio[0]["value"][1]) > policy.performance_alert_ratio
    coverage = _series(monitored_stack, f'ml_label_coverage_ratio{{model="{model}"}}')
    assert coverage[""] >= policy.min_label_coverage
    info = prom_query(monitored_stack.live.prometheus_url, f'ml_policy_info{{model="{model}"}}')
    assert [r["metric"]["policy_version"] for r in info] == [policy.version]


def test_promtool_check_metrics_is_clean_on_what_the_pushgateway_exposes(
    monitored_stack: MonitoredStack,
):
    with urllib.request.urlopen(f"{monitored_stack.live.pushgateway_url}/metrics") as response:
        exposed = response.read()
    assert b"ml_feature_drift_score{" in exposed
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=exposed, capture_output=True, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")

"""The estimated performance in the result's JSON, the push, the history and the summary."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from datetime import date, timedelta

from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from tasks.export import catalogue as metrics
from tasks.export import history
from tasks.performance.estimate import PerformanceEstimate
from tasks.reports import day as reports
from tasks.results.day import from_json, to_json
from tests import builders

RUN = metrics.RunStamp(finished_at_seconds=1_772_500_000.0, duration_seconds=3.5)
ESTIMATE = PerformanceEstimate(
    n_rows=200,
    n_sampled=200,
    mae=1.8,
    mae_lower=1.5,
    mae_upper=2.1,
    mae_standard_error=0.153,
    rmse=2.4,
)
ESTIMATED = {
    "ml_model_estimated_mae": 1.8,
    "ml_model_estimated_mae_lower": 1.5,
    "ml_model_estimated_mae_upper": 2.1,
    "ml_model_estimated_rmse": 2.4,
}


def with_estimate(estimate: PerformanceEstimate | None = ESTIMATE, **kwargs):
    return replace(builders.result(**kwargs), estimate=estimate)


def samples(result) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry_for(metrics.metric_families(result, RUN))).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_push_carries_the_batchs_estimated_mae_its_band_and_rmse_with_model_version():
    pushed = samples(with_estimate())
    for name, value in ESTIMATED.items():
        assert pushed[(name, (("model_version", "v1"),))] == value
    # the estimate is for the monitored batch, whose start is ml_batch_timestamp_seconds
    assert pushed[("ml_batch_timestamp_seconds", (("model_version", "v1"),))] == 1772409600.0


def test_without_an_estimate_no_estimated_series_is_pushed_and_the_rest_is_unchanged():
    pushed = samples(with_estimate(None))
    assert not [key for key in pushed if key[0].startswith("ml_model_estimated")]
    assert pushed == {
        key: value for key, value in samples(with_estimate()).items() if key[0] not in ESTIMATED
    }


def test_promtool_check_metrics_is_clean_with_the_estimated_gauges():
    text = generate_latest(metrics.registry_for(metrics.metric_families(with_estimate(), RUN)))
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""


def test_the_estimate_survives_the_json_round_trip():
    result = with_estimate()
    again = from_json(to_json(result))
    assert again.estimate == ESTIMATE
    assert json.loads(to_json(result))["estimate"]["mae_lower"] == 1.5


def test_a_result_written_before_estimates_existed_reads_back_with_none():
    old = json.loads(to_json(with_estimate(None)))
    del old["estimate"]
    assert from_json(json.dumps(old).encode()).estimate is None


def test_the_history_has_the_estimates_at_event_time():
    days = [date(2026, 3, 2) + timedelta(days=i) for i in range(3)]
    runs = [
        history.PastRun(with_estimate(replace(ESTIMATE, mae=1.0 + i), day=day), 1.0)
        for i, day in enumerate(days)
    ]
    text = history.openmetrics_text(history.history_families(runs)).decode()
    families = {f.name: f for f in parse_om(text)}
    estimated = families["ml_model_estimated_mae"].samples
    assert [(s.value, float(s.timestamp)) for s in estimated] == [
        (1.0 + i, history.scheduled_run_seconds(day)) for i, day in enumerate(days)
    ]
    assert estimated[0].labels == {
        "job": "ml_monitoring", "model": "toy", "model_version": "v1",
    }  # fmt: skip
    for name in ESTIMATED:
        assert len(families[name].samples) == 3


def test_the_summary_gives_the_estimate_with_its_band_and_says_which_number_to_trust_when():
    summary = reports.summary_markdown(with_estimate(coverage=0.9))
    assert "estimated MAE 1.8 (band 1.5 to 2.1) = 1.8 x the baseline 1" in summary
    assert "this batch: realized MAE not known yet (0% labelled)" in summary
    assert "realized MAE of batch 2026-02-25 (90% labelled): 1.5" in summary
    assert "covariate shift" in summary and "cannot see concept drift" in summary
    assert "From 80% label coverage the realized MAE is the one to trust" in summary


def test_the_days_report_published_as_the_summary_artifact_says_the_same():
    from core.settings import DriftRule

    report = reports.DayReport(with_estimate(), DriftRule(), (), None, None)
    for text in (report.markdown(), report.html()):
        assert "estimated MAE 1.8 (band 1.5 to 2.1)" in text
        assert "cannot see concept drift" in text


def test_the_summary_says_when_there_is_no_estimate():
    summary = reports.summary_markdown(with_estimate(None))
    assert "estimated MAE: none" in summary

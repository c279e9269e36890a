"""Every threshold and schedule number in the alert rules and the dashboard is the one in
core/settings.py (or, per model, the policy's gauge with core/settings.py's default as its
fallback): changing one side only fails here."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.policy import Policy, parse_policy
from core.settings import (
    BATCH_MISSING_AFTER,
    DATASET_DRIFT_SHARE,
    DEFAULT_ALERT_THRESHOLDS,
    LABELS_DELAYED_AFTER,
    MIN_LABEL_COVERAGE,
    MONITORING_STALE_AFTER,
    NIGHTLY_CRON,
    NIGHTLY_INTERVAL,
    NIGHTLY_RUN_TIME_UTC,
    DriftRule,
)

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "infra" / "prometheus" / "rules" / "driftline.rules.yml"
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "driftline-model-monitoring.json"
COVERAGE = MIN_LABEL_COVERAGE
RULE = DriftRule()
THRESHOLDS = DEFAULT_ALERT_THRESHOLDS


def _rules() -> dict[str, list[dict[str, Any]]]:
    """Alert name -> its rules (MLBatchMissing has two)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            by_name.setdefault(rule["alert"], []).append(rule)
    return by_name


def _expr(alert: str) -> str:
    return " ".join(" ".join(r["expr"].split()) for r in _rules()[alert])


def _text(alert: str) -> str:
    """The alert's annotations as one line of prose (templates and all)."""
    return " ".join(" ".join(" ".join(r["annotations"].values()).split()) for r in _rules()[alert])


def _compared(expr: str, op: str) -> list[float]:
    """The numbers `expr` compares against with `op` (`> 1.2`, `>= 0.8`, `> 26 * 3600`)."""
    found = re.findall(rf"{re.escape(op)}\s*([0-9.]+)(?:\s*\*\s*([0-9.]+))?(?![0-9.])", expr)
    return [float(a) * (float(b) if b else 1.0) for a, b in found]


def _panels() -> dict[str, dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for panel in panels for p in (panel, *walk(panel.get("panels", [])))]

    return {p["title"]: p for p in walk(json.loads(DASHBOARD.read_text())["panels"])}


def _steps(thresholds: dict[str, Any]) -> dict[str, float | None]:
    """Colour -> where it starts."""
    return {step["color"]: step["value"] for step in thresholds["steps"]}


def _override_thresholds(panel: dict[str, Any], matcher: str) -> dict[str, Any]:
    for override in panel["fieldConfig"]["overrides"]:
        if override["matcher"]["options"] == matcher:
            for prop in override["properties"]:
                if prop["id"] == "thresholds":
                    return dict(prop["value"])
    raise AssertionError(f"no thresholds override for {matcher!r} in {panel['title']!r}")


def _exprs(node: Any) -> list[str]:
    """Every PromQL query in the dashboard: panel targets, variables and annotations."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in _exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in _exprs(value)]
    return []


def _hours(window: str) -> float:
    amount, unit = float(window[:-1]), window[-1]
    return amount * {"h": 1.0, "d": 24.0, "m": 1 / 60}[unit]


# --- the schedule ---------------------------------------------------------------------------


def test_the_cron_runs_every_night_at_the_nightly_run_time() -> None:
    minute, hour, *rest = NIGHTLY_CRON.split()
    assert (int(hour), int(minute), rest) == (
        NIGHTLY_RUN_TIME_UTC.hour,
        NIGHTLY_RUN_TIME_UTC.minute,
        ["*", "*", "*"],
    )
    assert timedelta(days=1) == NIGHTLY_INTERVAL


def test_staleness_is_one_nightly_interval_plus_a_two_hour_margin() -> None:
    assert NIGHTLY_INTERVAL + timedelta(hours=2) == MONITORING_STALE_AFTER


def test_monitoring_stale_fires_after_the_staleness_of_the_schedule() -> None:
    expr = _expr("MLMonitoringStale")
    assert _compared(expr, ">") == [MONITORING_STALE_AFTER.total_seconds()]
    text = _text("MLMonitoringStale")
    assert f"alert after {MONITORING_STALE_AFTER.total_seconds() / 3600:g} h" in text
    assert f"scheduled at {NIGHTLY_RUN_TIME_UTC:%H:%M} UTC" in text


def test_batch_missing_and_labels_delayed_use_the_settings_days() -> None:
    assert _compared(_expr("MLBatchMissing"), ">") == [BATCH_MISSING_AFTER.total_seconds()]
    assert f"older than {BATCH_MISSING_AFTER.days} days" in _text("MLBatchMissing")
    delayed = _expr("MLLabelsDelayed")
    assert _compared(delayed, ">") == [LABELS_DELAYED_AFTER.total_seconds()]
    assert [v for v in _compared(delayed, ">=") if v >= 1] == [LABELS_DELAYED_AFTER.total_seconds()]
    # the look-back covers the 7 batch days with a day to spare
    assert re.findall(r"\[(\d+)d\]", delayed) == [str(LABELS_DELAYED_AFTER.days + 1)]
    assert f"for {LABELS_DELAYED_AFTER.days} days" in _text("MLLabelsDelayed")


def test_every_dashboard_query_reads_back_over_the_staleness() -> None:
    windows = [
        w
        for expr in _exprs(json.loads(DASHBOARD.read_text()))
        for w in re.findall(r"last_over_time\([^\[]*\[(\w+)\]", expr)
    ]
    assert len(windows) > 20  # the panels, the variables and the annotations alike
    assert {_hours(w) for w in windows} == {MONITORING_STALE_AFTER.total_seconds() / 3600}


def test_the_dashboard_marks_a_late_run_red_after_the_staleness() -> None:
    panel = _panels()["Time since last successful run"]
    steps = _steps(panel["fieldConfig"]["defaults"]["thresholds"])
    assert steps["red"] == MONITORING_STALE_AFTER.total_seconds()


# --- performance ratios and coverage --------------------------------------------------------

RATIOS = [
    (
        "MLPerformanceDegraded",
        "ml_policy_performance_alert_ratio",
        THRESHOLDS.performance_alert_ratio,
    ),
    (
        "MLEstimatedPerformanceDegraded",
        "ml_policy_estimate_alert_ratio",
        THRESHOLDS.estimate_alert_ratio,
    ),
]


def _fallbacks(expr: str) -> list[float]:
    """The literals of `... * 0 + 1.2`: the ratio of a push without the policy's gauge."""
    return [float(v) for v in re.findall(r"\*\s*0\s*\+\s*([0-9.]+)(?![0-9.])", expr)]


def _quoted_fallbacks(text: str, gauge: str) -> list[float]:
    """What a description quotes when the ratio gauge is absent: `{{ else }}1.2{{ end }}`."""
    found = re.findall(rf"{gauge}\{{[^}}]*\}}.*?\{{\{{ else \}}\}}([0-9.]+)\{{\{{ end \}}\}}", text)
    return [float(v) for v in found]


def test_the_policy_defaults_are_the_settings_defaults() -> None:
    policy = Policy()
    assert policy.performance_alert_ratio == THRESHOLDS.performance_alert_ratio
    assert policy.estimate_alert_ratio == THRESHOLDS.estimate_alert_ratio
    assert policy.min_label_coverage == COVERAGE
    assert parse_policy({}, source="policy.json") == policy


@pytest.mark.parametrize(("alert", "gauge", "default"), RATIOS)
def test_performance_alerts_compare_with_the_policy_ratio_and_fall_back_to_the_default(
    alert: str, gauge: str, default: float
) -> None:
    expr = _expr(alert)
    assert f"> on (job, model) group_left () ( {gauge}" in expr
    assert _compared(expr, ">") == []  # no literal ratio of its own
    # one rule for regressors, one for classifiers (task="classification"): each falls back alike
    assert _fallbacks(expr) == [default] * len(_rules()[alert])
    assert _quoted_fallbacks(_text(alert), gauge) == [default] * len(_rules()[alert])


def test_no_rule_compares_label_coverage_the_engine_applies_it_per_model() -> None:
    for alert in ("MLPerformanceDegraded", "MLEstimatedPerformanceDegraded", "MLLabelsDelayed"):
        expr = _expr(alert)
        assert "ml_label_coverage_ratio" not in expr, alert
        assert [v for v in _compared(expr, ">=") if v < 1] == [], alert
        assert f"{COVERAGE:.0%}" not in _text(alert), alert
    assert "reached its label coverage" in _text("MLLabelsDelayed")
    assert "ml_label_coverage_ratio" in _text("MLPerformanceDegraded")  # quoted by query


def test_dataset_drift_fires_at_the_settings_share() -> None:
    assert _compared(_expr("MLDatasetDrift"), ">=") == [DATASET_DRIFT_SHARE]


def test_drift_alerts_quote_the_drift_rule() -> None:
    rule = f"below {RULE.alpha:g} and score at least {RULE.min_score:g}"
    assert rule in _text("MLFeatureDrift")
    assert f"score at least {RULE.min_score:g}, p below {RULE.alpha:g}" in _text(
        "MLPredictionDrift"
    )


def test_the_dashboard_turns_red_at_the_default_performance_ratio() -> None:
    steps = _steps(_panels()["MAE / baseline MAE"]["fieldConfig"]["defaults"]["thresholds"])
    assert steps["red"] == THRESHOLDS.performance_alert_ratio
    orange = steps["orange"]
    assert orange is not None and 1 < orange < THRESHOLDS.performance_alert_ratio  # warns before


@pytest.mark.parametrize(
    ("title", "gauge", "default"),
    [
        ("Performance vs baseline", RATIOS[0][1], RATIOS[0][2]),
        ("Estimated vs realized MAE", RATIOS[1][1], RATIOS[1][2]),
    ],
)
def test_the_dashboards_alert_lines_draw_the_policy_ratio_or_the_default(
    title: str, gauge: str, default: float
) -> None:
    lines = [t for t in _panels()[title]["targets"] if "alert" in t.get("legendFormat", "")]
    assert lines, f"{title!r} draws no alert line"
    for target in lines:
        assert f"last_over_time({gauge}{{" in target["expr"]
        assert "ml_model_baseline_mae" in target["expr"]
        assert _fallbacks(target["expr"]) == [default]
        assert not re.match(r"\s*[0-9.]+\s*\*", target["expr"])  # no fixed factor in front


def test_the_dashboard_counts_coverage_and_label_lag_as_the_settings_do() -> None:
    panel = _panels()["Label coverage"]
    assert _steps(panel["fieldConfig"]["defaults"]["thresholds"])["green"] == COVERAGE
    lag = _steps(_override_thresholds(panel, "B"))
    assert lag["red"] == LABELS_DELAYED_AFTER.days
    realized = [
        t
        for t in _panels()["Estimated vs realized MAE"]["targets"]
        if "realized" in t.get("legendFormat", "")
    ]
    # the coverage is each model's own: the legend quotes none
    assert [t["legendFormat"] for t in realized] == [
        "realized MAE (newest batch with enough labels)"
    ]


def test_the_dashboard_marks_drift_by_the_drift_rule() -> None:
    panels = _panels()
    for title in ("Drift score by feature", "Prediction drift"):
        steps = _steps(panels[title]["fieldConfig"]["defaults"]["thresholds"])
        assert steps["red"] == RULE.min_score, title
    p_values = _steps(_override_thresholds(panels["Drift tests on the newest batch"], "p-value"))
    assert p_values["green"] == RULE.alpha

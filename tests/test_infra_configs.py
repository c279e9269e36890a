"""The infra/ configs pass their own tools' checks and say what the contract promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "infra"
RULES = INFRA / "prometheus" / "rules" / "driftline.rules.yml"
ALERTMANAGER = INFRA / "alertmanager" / "alertmanager.yml"
PROMTOOL_TESTS = sorted((REPO_ROOT / "tests" / "promtool").glob("*.yml"))

# Contract section 6.
CONTRACT_ALERTS = {
    "MLFeatureDrift",
    "MLDataQuality",
    "MLPredictionDrift",
    "MLDatasetDrift",
    "MLPerformanceDegraded",
    "MLEstimatedPerformanceDegraded",
    "MLMonitoringStale",
    "MLMonitoringPushFailing",
    "MLMonitoringRunFailed",
    "MLBatchMissing",
    "MLLabelsDelayed",
}

APT_PACKAGE = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
}


def run_tool(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checker; a missing binary fails the test (CI must install it), never skips it."""
    if shutil.which(argv[0]) is None:
        pytest.fail(
            f"{argv[0]} not found on PATH; install it with: apt-get install {APT_PACKAGE[argv[0]]}"
        )
    return subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    env.update(extra)
    return env


# --- Prometheus -----------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rule_files() -> None:
    result = run_tool("promtool", "check", "config", str(INFRA / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_rules_without_lint_findings() -> None:
    result = run_tool("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_rule_unit_tests_pass() -> None:
    assert PROMTOOL_TESTS, "no promtool tests under tests/promtool/"
    result = run_tool("promtool", "test", "rules", *map(str, PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(PROMTOOL_TESTS)


def test_pushgateway_is_scraped_with_honor_labels_so_job_and_model_survive() -> None:
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["pushgateway:9091"]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_every_contract_alert_is_defined_with_for_severity_and_guidance() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == CONTRACT_ALERTS
    for rule in rules:
        assert rule.get("for"), f"{rule['alert']} has no for:"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "Next:" in rule["annotations"]["description"], (
            f"{rule['alert']}'s description does not say what to look at next"
        )


def test_batch_dated_alerts_quote_the_batch_date_human_readable() -> None:
    for rule in alert_rules():
        if rule["alert"] in {"MLFeatureDrift", "MLPredictionDrift", "MLDatasetDrift"}:
            description = rule["annotations"]["description"]
            assert "ml_batch_timestamp_seconds" in description, rule["alert"]
            assert "humanizeTimestamp" in description, rule["alert"]


def test_feature_drift_alert_names_feature_score_and_thresholds() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "MLFeatureDrift"]
    text = rule["annotations"]["summary"] + rule["annotations"]["description"]
    for expected in ("$labels.feature", "$value", "0.05", "0.1", "p-value"):
        assert expected in text


def test_every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == CONTRACT_ALERTS
    # Silence is also asserted by the exact alert lists of firing cases (other models absent).
    assert {
        "MLMonitoringStale", "MLPerformanceDegraded", "MLEstimatedPerformanceDegraded",
        "MLLabelsDelayed", "MLMonitoringRunFailed",
    } <= silent  # fmt: skip


# --- Alertmanager ---------------------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_config() -> None:
    result = run_tool("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=MLPerformanceDegraded"], "ml-oncall"),
        (["severity=warning", "alertname=MLFeatureDrift"], "ml-team"),
        (["alertname=Unlabelled"], "ml-webhook"),
    ],
)
def test_alerts_are_routed_by_severity(labels: list[str], receiver: str) -> None:
    result = run_tool(
        "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_notifications_are_grouped_by_model_and_alertname() -> None:
    route = yaml.safe_load(ALERTMANAGER.read_text())["route"]
    assert set(route["group_by"]) == {"alertname", "model"}


def test_dataset_drift_inhibits_feature_drift_of_the_same_model() -> None:
    (rule,) = yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="MLDatasetDrift"']
    assert rule["target_matchers"] == ['alertname="MLFeatureDrift"']
    assert rule["equal"] == ["model"]


def test_every_receiver_posts_to_the_webhook_and_slack_and_email_read_secrets_from_files() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    kinds = {kind for r in config["receivers"] for kind in r if kind.endswith("_configs")}
    assert {"webhook_configs", "slack_configs", "email_configs"} <= kinds
    for receiver in config["receivers"]:
        assert receiver.get("webhook_configs"), receiver["name"]
    # Secrets only by file reference, from the mounted secrets folder.
    secrets = {k: v for k, v in config["global"].items() if "password" in k or "api_url" in k}
    assert secrets == {
        "smtp_auth_password_file": "/etc/alertmanager/secrets/smtp_password",
        "slack_api_url_file": "/etc/alertmanager/secrets/slack_api_url",
    }
    text = ALERTMANAGER.read_text()
    for inline_secret in ("api_url:", "auth_password:", "hooks.slack.com"):
        assert inline_secret not in text


# --- docker-compose -------------------------------------------------------------------------------


def compose_config() -> dict[str, Any]:
    result = run_tool(
        "docker-compose", "-f", "docker-compose.yml", "config",
        env=compose_env(GRAFANA_ADMIN_PASSWORD="not-a-real-password"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def test_compose_file_is_valid_offline() -> None:
    result = run_tool(
        "docker-compose", "-f", "docker-compose.yml", "config", "-q",
        env=compose_env(GRAFANA_ADMIN_PASSWORD="not-a-real-password"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_refuses_to_start_grafana_without_an_admin_password() -> None:
    result = run_tool(
        "docker-compose", "-f", "docker-compose.yml", "config", "-q", env=compose_env()
    )
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_compose_pins_the_image_versions() -> None:
    images = {name: svc.get("image") for name, svc in compose_config()["services"].items()}
    assert images["prometheus"] == "prom/prometheus:v2.42.0"
    assert images["pushgateway"] == "prom/pushgateway:v1.5.1"
    assert images["alertmanager"] == "prom/alertmanager:v0.25.0"
    assert images["prefect-server"] == "prefecthq/prefect:3.9.1-python3.11"
    grafana = images["grafana"]
    assert grafana.startswith("grafana/grafana:1"), grafana
    assert grafana.split(":")[1].split(".")[0] in {"11", "12"} and grafana.count(".") == 2


def test_compose_services_have_healthchecks_and_named_volumes() -> None:
    config = compose_config()
    for name, service in config["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert set(config["volumes"]) >= {"prometheus-data", "pushgateway-data", "grafana-data"}


def test_backfill_in_the_driftline_service_can_reach_prometheus_data() -> None:
    services = compose_config()["services"]

    def volume_targets(service: str) -> dict[str, str]:
        return dict(volume.split(":")[:2] for volume in services[service]["volumes"])

    assert volume_targets("prometheus")["prometheus-data"] == "/prometheus"
    assert volume_targets("driftline")["prometheus-data"] == "/prometheus"
    assert services["driftline"]["command"] == ["driftline", "serve"]
    assert services["driftline"]["build"]["dockerfile"] == "Dockerfile"


def test_grafana_gets_the_provisioning_tree_as_one_mount() -> None:
    grafana = compose_config()["services"]["grafana"]
    # docker-compose 1.29 prints volumes as source:target:mode; binds have absolute sources.
    binds = [v.split(":") for v in grafana["volumes"] if v.startswith("/")]
    assert [Path(source) for source, _, _ in binds] == [INFRA / "grafana"]
    target = binds[0][1]
    assert grafana["environment"]["GF_PATHS_PROVISIONING"] == f"{target}/provisioning"
    provider = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/driftline.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == f"{target}/dashboards"


def test_the_image_installs_from_the_lock_file() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen" in dockerfile
    assert "COPY pyproject.toml uv.lock" in dockerfile


# --- Pushgateway ----------------------------------------------------------------------------------


def test_pushgateway_basic_auth_example_holds_only_a_bcrypt_hash() -> None:
    config = yaml.safe_load((INFRA / "pushgateway" / "web-config.example.yml").read_text())
    (password_hash,) = config["basic_auth_users"].values()
    assert password_hash.startswith(("$2a$", "$2b$", "$2y$"))
    assert not (INFRA / "pushgateway" / "web-config.yml").exists(), "auth is opt-in, not default"

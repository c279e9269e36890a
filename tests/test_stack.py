"""`driftline stack`: loopback Prometheus, Pushgateway and Alertmanager from the infra/ configs."""

from __future__ import annotations

import base64
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from driftline import stack
from tests.procs import launched, wait_for
from tests.stack_fixtures import loopback_config

INFRA = Path(__file__).resolve().parents[1] / "infra"


def base_prometheus() -> dict:
    return yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())


def base_alertmanager() -> dict:
    return yaml.safe_load((INFRA / "alertmanager" / "alertmanager.yml").read_text())


# --- rendering ------------------------------------------------------------------------------------


def test_rendered_prometheus_config_targets_the_loopback_ports(tmp_path: Path) -> None:
    config = loopback_config(tmp_path, scrape_interval="1s", evaluation_interval="2s")
    rendered = stack.render_prometheus_config(base_prometheus(), config)
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{config.pushgateway_port}"
    ]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["prometheus"]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{config.prometheus_port}"
    ]
    alertmanagers = rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"127.0.0.1:{config.alertmanager_port}"]
    assert rendered["global"]["scrape_interval"] == "1s"
    assert rendered["global"]["evaluation_interval"] == "2s"


def test_rendered_rules_take_the_overridden_for_and_keep_everything_else() -> None:
    rules = yaml.safe_load((INFRA / "prometheus/rules/driftline.rules.yml").read_text())
    rendered = stack.render_rules(rules, rule_for="2s")
    alerts = [r for g in rendered["groups"] for r in g["rules"]]
    assert {r["for"] for r in alerts} == {"2s"}
    originals = [r for g in rules["groups"] for r in g["rules"]]
    assert [r["expr"] for r in alerts] == [r["expr"] for r in originals]
    assert stack.render_rules(rules, rule_for=None) == rules


def test_rendered_alertmanager_notifies_only_the_given_webhook_without_secrets(
    tmp_path: Path,
) -> None:
    config = loopback_config(tmp_path, webhook_url="http://127.0.0.1:1234/hook")
    rendered = stack.render_alertmanager_config(base_alertmanager(), config)
    for receiver in rendered["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}
        assert [w["url"] for w in receiver["webhook_configs"]] == ["http://127.0.0.1:1234/hook"]
    assert not [key for key in rendered["global"] if key.endswith("_file")]
    assert rendered["inhibit_rules"] == base_alertmanager()["inhibit_rules"]


def test_rendered_alertmanager_reads_secrets_from_the_given_dir(tmp_path: Path) -> None:
    config = loopback_config(tmp_path, alertmanager_secrets_dir=tmp_path / "secrets")
    rendered = stack.render_alertmanager_config(base_alertmanager(), config)
    assert rendered["global"]["slack_api_url_file"] == str(tmp_path / "secrets" / "slack_api_url")
    assert rendered["global"]["smtp_auth_password_file"] == str(
        tmp_path / "secrets" / "smtp_password"
    )
    kinds = {kind for receiver in rendered["receivers"] for kind in receiver}
    assert {"slack_configs", "email_configs"} <= kinds


def test_rendered_alertmanager_shortens_every_route_timing(tmp_path: Path) -> None:
    config = loopback_config(
        tmp_path,
        alertmanager_group_wait="1s",
        alertmanager_group_interval="2s",
        alertmanager_repeat_interval="1m",
    )
    route = stack.render_alertmanager_config(base_alertmanager(), config)["route"]
    for node in [route, *route["routes"]]:
        assert (node["group_wait"], node["group_interval"], node["repeat_interval"]) == (
            "1s",
            "2s",
            "1m",
        )


def test_rendered_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    config = loopback_config(tmp_path, rule_for="1s", webhook_url="http://127.0.0.1:9/x")
    rendered = stack.render(config)
    for argv in (
        ["promtool", "check", "config", str(rendered.prometheus_config)],
        ["amtool", "check-config", str(rendered.alertmanager_config)],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in rendered.rule_files] == ["driftline.rules.yml"]


def test_infra_is_found_next_to_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (stack.INFRA_DIR / "prometheus" / "prometheus.yml").is_file()
    monkeypatch.delenv("DRIFTLINE_STACK_DIR")
    assert stack.default_state_dir().parts[-2:] == ("var", "stack")
    monkeypatch.setenv("DRIFTLINE_STACK_DIR", "/srv/driftline-stack")
    assert stack.default_state_dir() == Path("/srv/driftline-stack")


# --- processes ------------------------------------------------------------------------------------


def test_a_missing_binary_is_named_with_its_apt_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(stack.MissingBinaryError) as error:
        stack.up(loopback_config(tmp_path / "state"))
    assert "prometheus-pushgateway not found on PATH" in str(error.value)
    assert "apt-get install prometheus-pushgateway" in str(error.value)


@pytest.fixture()
def own_stack(tmp_path: Path) -> Iterator[stack.StackConfig]:
    """A stack of this test's own, always taken down."""
    config = loopback_config(tmp_path / "state")
    try:
        yield config
    finally:
        stack.down(config.state_dir)


def push(url: str, body: str, *, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(
        f"{url}/metrics/job/ml_monitoring/model/m", data=body.encode(), method="PUT"
    )
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def pushgateway_metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.e2e
def test_up_status_down(own_stack: stack.StackConfig) -> None:
    statuses = stack.up(own_stack)
    assert [(s.name, s.is_ready) for s in statuses] == [
        ("pushgateway", True),
        ("alertmanager", True),
        ("prometheus", True),
    ]
    assert {s.url for s in statuses} == {
        own_stack.url("pushgateway"),
        own_stack.url("alertmanager"),
        own_stack.url("prometheus"),
    }
    report = stack.format_status(stack.status(own_stack.state_dir))
    assert report.count("ready") == 3, report
    # Starting again is harmless: nothing is started twice.
    assert [s.pid for s in stack.up(own_stack)] == [s.pid for s in statuses]

    assert stack.down(own_stack.state_dir) == ["prometheus", "alertmanager", "pushgateway"]
    assert not any(s.is_running for s in stack.status(own_stack.state_dir))
    assert stack.down(own_stack.state_dir) == []


@pytest.mark.e2e
def test_pushed_metrics_survive_a_restart(own_stack: stack.StackConfig) -> None:
    stack.up(own_stack)
    url = own_stack.url("pushgateway")
    assert push(url, "ml_batch_rows 1234\n") == 200
    stack.down(own_stack.state_dir)
    stack.up(own_stack)
    assert 'ml_batch_rows{instance="",job="ml_monitoring",model="m"} 1234' in pushgateway_metrics(
        url
    )


@pytest.mark.e2e
def test_prometheus_scrapes_the_pushgateway_keeping_job_and_model(
    own_stack: stack.StackConfig,
) -> None:
    fast = replace(own_stack, scrape_interval="1s")
    stack.up(fast)
    assert push(fast.url("pushgateway"), "ml_batch_rows 7\n") == 200
    query = urllib.parse.quote('ml_batch_rows{job="ml_monitoring",model="m"}')

    def scraped() -> bool:
        with urllib.request.urlopen(
            f"{fast.url('prometheus')}/api/v1/query?query={query}", timeout=5
        ) as response:
            return '"7"' in response.read().decode()

    wait_for(scraped, timeout_seconds=20, what="Prometheus to scrape the pushed sample")


@pytest.mark.e2e
def test_down_leaves_alone_a_process_it_did_not_start(own_stack: stack.StackConfig) -> None:
    own_stack.state_dir.mkdir(parents=True)
    with launched(["sleep", "60"], out=own_stack.state_dir / "stranger.log") as stranger:
        # A stale pid file pointing at someone else's process, e.g. after a reboot.
        (own_stack.state_dir / "prometheus.pid").write_text(f"{stranger.pid}\n")
        assert stack.down(own_stack.state_dir) == []
        assert stranger.running(), "down must not signal a process it did not start"


@pytest.mark.e2e
def test_a_busy_port_is_reported_and_nothing_is_left_running(
    own_stack: stack.StackConfig,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", own_stack.prometheus_port))
        squatter.listen()
        with pytest.raises(stack.StackError, match=f"127.0.0.1:{own_stack.prometheus_port}"):
            stack.up(own_stack)
    assert not any(s.is_running for s in stack.status(own_stack.state_dir))


@pytest.mark.e2e
def test_pushgateway_basic_auth_example_refuses_anonymous_pushes(
    own_stack: stack.StackConfig,
) -> None:
    example = INFRA / "pushgateway" / "web-config.example.yml"
    secured = replace(own_stack, pushgateway_web_config=example)
    stack.up(secured)
    url = secured.url("pushgateway")
    assert push(url, "ml_batch_rows 1\n") == 401
    assert push(url, "ml_batch_rows 1\n", auth=("driftline", "wrong")) == 401
    assert push(url, "ml_batch_rows 1\n", auth=("driftline", "change-me")) == 200


@pytest.mark.e2e
def test_the_cli_verbs_print_each_component(
    own_stack: stack.StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.main("up", config=own_stack) == 0
    up_report = capsys.readouterr().out
    for component in ("pushgateway", "alertmanager", "prometheus"):
        assert f"{component} " in up_report
        assert own_stack.url(component) in up_report
    assert stack.main("status", config=own_stack) == 0
    assert capsys.readouterr().out.count(" ready ") == 3
    assert stack.main("down", config=own_stack) == 0
    assert capsys.readouterr().out.strip() == "stopped prometheus, alertmanager, pushgateway"
    assert stack.main("status", config=own_stack) == 0
    assert capsys.readouterr().out.count(" stopped ") == 3


def test_the_cli_reports_a_missing_binary_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert stack.main("up", config=loopback_config(tmp_path / "state")) == 1
    assert "apt-get install prometheus-pushgateway" in capsys.readouterr().err

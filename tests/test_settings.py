"""Settings are read in one place, and a command fails only on the settings it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from core.settings import (
    IO_RETRY_DELAYS_SECONDS,
    LockPolicy,
    PushSettings,
    load_settings,
    served_models,
)
from tests.conftest import run_cli


def test_flags_win_over_the_environment_and_the_environment_over_defaults(tmp_path: Path) -> None:
    env = {"DATA_LAKE_URI": "s3://lake/prefix", "PUSHGATEWAY_URL": "http://gw:9091"}
    settings = load_settings(env, data_lake_uri=str(tmp_path))
    assert settings.data_lake_uri == str(tmp_path)
    assert settings.push.url == "http://gw:9091"
    assert settings.prometheus_url == "http://localhost:9090"
    assert settings.model_registry_uri.endswith("model_registry")


def test_the_password_comes_from_its_file_and_never_shows_in_a_repr(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load_settings(
        {"PUSHGATEWAY_USERNAME": "monitor", "PUSHGATEWAY_PASSWORD_FILE": str(secret)}
    )
    assert (settings.push.username, settings.push.password) == ("monitor", "s3cret")
    assert "s3cret" not in repr(settings)


def test_a_missing_password_file_is_bad_input_naming_the_variable_and_the_file(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=f"PUSHGATEWAY_PASSWORD_FILE='{missing}' cannot be read"):
        load_settings({"PUSHGATEWAY_PASSWORD_FILE": str(missing)})


def test_a_command_that_does_not_push_never_reads_the_push_settings(tmp_path: Path) -> None:
    env = {
        "PUSHGATEWAY_PASSWORD_FILE": str(tmp_path / "nope"),
        "DRIFTLINE_PUSH_RETRY_DELAYS": "soon",
    }
    assert load_settings(env, push=False).push == PushSettings()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DRIFTLINE_PUSH_RETRY_DELAYS", "2,x", "not a comma-separated list of seconds"),
        ("DRIFTLINE_LOCK_WAIT_SECONDS", "two minutes", "not a number of seconds"),
        ("DRIFTLINE_LOCK_STALE_SECONDS", "1h", "not a number of seconds"),
    ],
)
def test_an_unusable_value_names_its_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(InputError, match=f"{variable}='{value}' is {expected}"):
        load_settings({variable: value})


def test_lock_and_retry_settings_default_and_parse() -> None:
    defaults = load_settings({})
    assert defaults.lock_policy == LockPolicy()
    assert defaults.push.retry_delays_seconds == IO_RETRY_DELAYS_SECONDS
    tuned = load_settings(
        {
            "DRIFTLINE_LOCK_WAIT_SECONDS": "5",
            "DRIFTLINE_LOCK_STALE_SECONDS": "60",
            "DRIFTLINE_PUSH_RETRY_DELAYS": "0, 1",
        }
    )
    assert (tuned.lock_policy.wait_seconds, tuned.lock_policy.stale_after_seconds) == (5.0, 60.0)
    assert tuned.push.retry_delays_seconds == (0.0, 1.0)


def test_served_models_are_named_and_checked() -> None:
    assert served_models({}) == ["diamonds-price"]
    assert served_models({"DRIFTLINE_MODELS": "a, b-2"}) == ["a", "b-2"]
    with pytest.raises(InputError, match="model name 'x/y' is not allowed"):
        served_models({"DRIFTLINE_MODELS": "x/y"})


@pytest.mark.slow
def test_stack_status_works_whatever_the_push_settings_say(tmp_path: Path) -> None:
    broken = {"PUSHGATEWAY_PASSWORD_FILE": str(tmp_path / "nope")}
    done = run_cli("stack", "status", env=broken, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.prefect
def test_a_monitor_run_with_an_unreadable_password_file_exits_2_before_any_work(
    tmp_path: Path,
) -> None:
    env = {
        "PUSHGATEWAY_PASSWORD_FILE": str(tmp_path / "nope"),
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
    }
    done = run_cli("simulate", "--start", "2026-01-01", "--days", "1", env=env, timeout=120)
    # simulate does not push, so it gets as far as the (empty) registry
    assert "PUSHGATEWAY_PASSWORD_FILE" not in done.stderr
    done = run_cli("monitor", "--date", "2026-01-01", env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"driftline: error: PUSHGATEWAY_PASSWORD_FILE='{tmp_path / 'nope'}' cannot be read "
        "(No such file or directory); point it at a readable file holding the password, "
        "or unset it"
    ]
    assert not (tmp_path / "lake").exists()

"""Every setting driftline reads, in one place: flags first, then the environment, then defaults.

Nothing is read at import time, and each command reads only what it needs: `load_settings` for
the commands that touch the lake and the registry (with the Pushgateway's credentials only when
the command pushes), `served_models` for `driftline serve`, `prefect_environment` before Prefect
is imported. A value that cannot be used is an `InputError` (exit 2) naming the variable, what it
held and what was expected. docs/contract.md, "Settings", lists the variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path

from core.errors import InputError
from core.names import check_name

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "diamonds-price"
# seconds between the attempts of every step that crosses a boundary (lake, registry, push)
IO_RETRY_DELAYS_SECONDS: tuple[float, ...] = (2, 10, 30)

# The schedule: the run for batch day D starts on D+1 at this time; backfilled history is
# stamped with the same time (tasks/export/history.py), so the two line up.
NIGHTLY_RUN_TIME_UTC = time(2, 0)
NIGHTLY_CRON = f"{NIGHTLY_RUN_TIME_UTC.minute} {NIGHTLY_RUN_TIME_UTC.hour} * * *"
NIGHTLY_INTERVAL = timedelta(days=1)
# One nightly interval plus room for a slow run or its retries: MLMonitoringStale fires after it
# and the dashboard reads sparse history with last_over_time(metric[26h]).
MONITORING_STALE_AFTER = NIGHTLY_INTERVAL + timedelta(hours=2)
# Read only by the alert rules (infra/prometheus/rules); tests/test_thresholds.py holds them equal.
DATASET_DRIFT_SHARE = 0.5  # MLDatasetDrift: half or more of the features drifted
BATCH_MISSING_AFTER = timedelta(days=3)  # MLBatchMissing: batch D is monitored on D+1
LABELS_DELAYED_AFTER = timedelta(days=7)  # MLLabelsDelayed: no batch reached label coverage


@dataclass(frozen=True)
class DriftRule:
    """When a feature counts as drifted (docs/contract.md, "Statistics")."""

    alpha: float = 0.05
    min_score: float = 0.1
    min_samples: int = 30


@dataclass(frozen=True)
class AlertThresholds:
    """When performance counts as degraded, as a multiple of the card's baseline MAE: the alert
    rules, the dashboard and the reports use these (docs/contract.md, "Alerts")."""

    performance_alert_ratio: float = 1.2  # MLPerformanceDegraded: the realized MAE above this
    estimate_alert_ratio: float = 1.2  # MLEstimatedPerformanceDegraded: the band's lower end


DEFAULT_ALERT_THRESHOLDS = AlertThresholds()
# a batch's realized performance is reported once this share of its rows is labelled
MIN_LABEL_COVERAGE = 0.8


@dataclass(frozen=True)
class LockPolicy:
    """How a run waits for another run of the same model and day (data_lake/lock.py)."""

    wait_seconds: float = 120.0  # a nightly run that finds a manual one running waits this long
    stale_after_seconds: float = 6 * 3600.0  # a lock this old is taken over from any host
    poll_seconds: float = 0.5


@dataclass(frozen=True)
class PushSettings:
    """Where the Pushgateway is and how to reach it."""

    url: str = "http://localhost:9091"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    retry_delays_seconds: tuple[float, ...] = IO_RETRY_DELAYS_SECONDS


@dataclass(frozen=True)
class Settings:
    data_lake_uri: str
    model_registry_uri: str
    prometheus_url: str = "http://localhost:9090"
    push: PushSettings = PushSettings()
    drift_rule: DriftRule = DriftRule()
    lock_policy: LockPolicy = LockPolicy()
    performance_window_days: int = 30
    # local, outside the registry: digests of registry files (model_registry/hash_cache.py)
    cache_dir: Path = REPO_ROOT / "var" / "cache"


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    push: bool = True,
    data_lake_uri: str | None = None,
    model_registry_uri: str | None = None,
    pushgateway_url: str | None = None,
    prometheus_url: str | None = None,
) -> Settings:
    """Resolve settings from explicit values, then `env` (default: the process environment).

    With `push=False` the Pushgateway's credentials and retries are not read, so a command that
    does not push cannot fail on them.
    """
    env = os.environ if env is None else env
    return Settings(
        data_lake_uri=data_lake_uri or env.get("DATA_LAKE_URI") or str(REPO_ROOT / "data_lake"),
        model_registry_uri=model_registry_uri
        or env.get("MODEL_REGISTRY_URI")
        or str(REPO_ROOT / "model_registry"),
        prometheus_url=prometheus_url or env.get("PROMETHEUS_URL") or "http://localhost:9090",
        cache_dir=Path(env.get("DRIFTLINE_CACHE_DIR") or REPO_ROOT / "var" / "cache"),
        push=_push_settings(env, pushgateway_url) if push else PushSettings(),
        lock_policy=LockPolicy(
            wait_seconds=_seconds(env, "DRIFTLINE_LOCK_WAIT_SECONDS", LockPolicy.wait_seconds),
            stale_after_seconds=_seconds(
                env, "DRIFTLINE_LOCK_STALE_SECONDS", LockPolicy.stale_after_seconds
            ),
        ),
    )


def _push_settings(env: Mapping[str, str], url: str | None) -> PushSettings:
    return PushSettings(
        url=url or env.get("PUSHGATEWAY_URL") or PushSettings.url,
        username=env.get("PUSHGATEWAY_USERNAME") or None,
        password=_secret(env, "PUSHGATEWAY_PASSWORD"),
        ca_file=env.get("PUSHGATEWAY_CA_FILE") or None,
        cert_file=env.get("PUSHGATEWAY_CERT_FILE") or None,
        key_file=env.get("PUSHGATEWAY_KEY_FILE") or None,
        retry_delays_seconds=_delays(env, "DRIFTLINE_PUSH_RETRY_DELAYS"),
    )


def served_models(env: Mapping[str, str] | None = None) -> list[str]:
    """The models `driftline serve` schedules: `DRIFTLINE_MODELS`, comma-separated."""
    raw = (os.environ if env is None else env).get("DRIFTLINE_MODELS", "")
    models = [m.strip() for m in raw.split(",") if m.strip()] or [DEFAULT_MODEL]
    return [check_name("model", m) for m in models]


def stack_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where `driftline stack` keeps its state: DRIFTLINE_STACK_DIR, default var/stack."""
    raw = (os.environ if env is None else env).get("DRIFTLINE_STACK_DIR")
    return Path(raw) if raw else REPO_ROOT / "var" / "stack"


def prefect_environment(env: MutableMapping[str, str] | None = None) -> None:
    """Keep Prefect local, quiet and inside the project unless the user set otherwise."""
    env = os.environ if env is None else env
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_HOME", str(REPO_ROOT / "var" / "prefect"))
    # the embedded server's default 20 s start-up budget is too short on a busy 2-core machine
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # run logs are progress, on stdout; stderr carries only the one-line error a script reads
    env.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")
    # Prefect creates its home without parents; the ephemeral SQLite database lives there
    Path(env["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (Docker/Kubernetes secrets)."""
    if env.get(name):
        return env[name]
    variable = f"{name}_FILE"
    path = env.get(variable)
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InputError(
            f"{variable}={path!r} cannot be read ({exc.strerror or exc}); point it at a readable "
            f"file holding the password, or unset it"
        ) from None


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InputError(
            f"{variable}={raw!r} is not a number of seconds (expected e.g. {default:.0f})"
        ) from None


def _delays(env: Mapping[str, str], variable: str) -> tuple[float, ...]:
    raw = env.get(variable, "")
    if not raw.strip():
        return IO_RETRY_DELAYS_SECONDS
    try:
        return tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise InputError(
            f"{variable}={raw!r} is not a comma-separated list of seconds (expected e.g. 2,10,30)"
        ) from None

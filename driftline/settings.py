"""Settings, read in one place: flags first, then environment, then embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from data_lake.lock import LockPolicy, policy_from_env
from driftline.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "diamonds-price"


@dataclass(frozen=True)
class DriftRule:
    """When a feature counts as drifted (contract section 4)."""

    alpha: float = 0.05
    min_score: float = 0.1
    min_samples: int = 30


@dataclass(frozen=True)
class Settings:
    data_lake_uri: str
    model_registry_uri: str
    pushgateway_url: str
    prometheus_url: str
    drift_rule: DriftRule = DriftRule()
    min_label_coverage: float = 0.8
    performance_window_days: int = 30
    pushgateway_username: str | None = None
    pushgateway_password: str | None = field(default=None, repr=False)
    push_retry_delays_seconds: tuple[float, ...] = (2, 10, 30)
    pushgateway_ca_file: str | None = None
    pushgateway_cert_file: str | None = None
    pushgateway_key_file: str | None = None
    lock_policy: LockPolicy = field(default_factory=LockPolicy)


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    data_lake_uri: str | None = None,
    model_registry_uri: str | None = None,
    pushgateway_url: str | None = None,
    prometheus_url: str | None = None,
) -> Settings:
    """Resolve settings from explicit values, then `env` (default: the process environment)."""
    env = os.environ if env is None else env
    return Settings(
        data_lake_uri=data_lake_uri or env.get("DATA_LAKE_URI") or str(REPO_ROOT / "data_lake"),
        model_registry_uri=model_registry_uri
        or env.get("MODEL_REGISTRY_URI")
        or str(REPO_ROOT / "model_registry"),
        pushgateway_url=pushgateway_url or env.get("PUSHGATEWAY_URL") or "http://localhost:9091",
        prometheus_url=prometheus_url or env.get("PROMETHEUS_URL") or "http://localhost:9090",
        pushgateway_username=env.get("PUSHGATEWAY_USERNAME") or None,
        pushgateway_password=_secret(env, "PUSHGATEWAY_PASSWORD"),
        push_retry_delays_seconds=_delays(env.get("DRIFTLINE_PUSH_RETRY_DELAYS", "2,10,30")),
        pushgateway_ca_file=env.get("PUSHGATEWAY_CA_FILE") or None,
        pushgateway_cert_file=env.get("PUSHGATEWAY_CERT_FILE") or None,
        pushgateway_key_file=env.get("PUSHGATEWAY_KEY_FILE") or None,
        lock_policy=policy_from_env(env),
    )


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (Docker/Kubernetes secrets)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    return Path(path).read_text().strip() if path else None


def _delays(raw: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise InputError(
            f"DRIFTLINE_PUSH_RETRY_DELAYS={raw!r} is not a comma-separated list of seconds "
            "(expected e.g. 2,10,30)"
        ) from exc

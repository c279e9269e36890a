"""Every metric name driftline exposes (contract section 5), built from a MonitoringResult.

The same families serve the live push (no timestamps: the Pushgateway refuses them) and the
backfilled history (each sample stamped at its nightly run's scheduled time). A fresh
`CollectorRegistry` is built for every push.
"""

from __future__ import annotations

import base64
import math
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.registry import Collector

from tasks.results import MonitoringResult

JOB = "ml_monitoring"
# metric field -> (gauge for the latest covered batch, gauge for the card's holdout value)
PERFORMANCE_METRICS: Mapping[str, tuple[str, str]] = {
    "mae": ("ml_model_mae", "ml_model_baseline_mae"),
    "rmse": ("ml_model_rmse", "ml_model_baseline_rmse"),
    "mape": ("ml_model_mape", "ml_model_baseline_mape"),
    "r2": ("ml_model_r2", "ml_model_baseline_r2"),
}
Handler = Callable[..., Callable[[], None]]


@dataclass(frozen=True)
class RunStamp:
    """When the run that produced a result succeeded and how long it took."""

    finished_at_seconds: float
    duration_seconds: float


def day_start_seconds(day: date) -> float:
    """00:00 UTC of `day` as Unix seconds."""
    return datetime.combine(day, time(), UTC).timestamp()


class _Families:
    """Gauge families keyed by name, each sample carrying model_version."""

    def __init__(self, base_labels: Mapping[str, str], timestamp: float | None) -> None:
        self.base_labels = dict(base_labels)
        self.timestamp = timestamp
        self.families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, doc: str, value: float, **labels: str) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return  # no sample rather than NaN: dashboards and alerts treat absent as unknown
        all_labels = {**self.base_labels, **labels}
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = GaugeMetricFamily(name, doc, labels=list(all_labels))
        family.add_metric(list(all_labels.values()), value, timestamp=self.timestamp)


def metric_families(
    result: MonitoringResult,
    run: RunStamp,
    *,
    timestamp: float | None = None,
    with_group_labels: bool = False,
) -> list[Metric]:
    """The gauges of one nightly run.

    For the history export, `timestamp` stamps every sample and `with_group_labels` adds the
    job and model labels that the Pushgateway's grouping key gives live series.
    """
    base = {"job": JOB, "model": result.model} if with_group_labels else {}
    f = _Families({**base, "model_version": result.model_version}, timestamp)
    f.add(
        "ml_batch_timestamp_seconds",
        "Start (00:00 UTC) of the monitored batch day.",
        day_start_seconds(result.batch_date),
    )
    f.add("ml_batch_rows", "Rows in the monitored batch.", float(result.n_rows))
    if result.n_rows:
        for d in result.features:
            if d.status != "ok":
                continue
            f.add(
                "ml_feature_drift_score",
                "Drift score: KS D or total variation distance.",
                d.score,
                feature=d.feature,
                test=d.test,
            )
            f.add(
                "ml_feature_drift_p_value",
                "Raw p-value of the feature's drift test.",
                d.p_value,
                feature=d.feature,
                test=d.test,
            )
        for d in result.features:
            f.add(
                "ml_feature_drift_detected",
                "1 when the feature drifted, else 0.",
                float(d.is_drifted),
                feature=d.feature,
            )
            f.add(
                "ml_feature_missing_ratio",
                "Share of missing values in the batch.",
                d.missing_ratio,
                feature=d.feature,
            )
        f.add(
            "ml_features_monitored",
            "Features tested for drift.",
            float(sum(d.status == "ok" for d in result.features)),
        )
        f.add(
            "ml_features_drifted",
            "Features flagged as drifted.",
            float(len(result.drifted_features)),
        )
        p = result.prediction
        if p is not None and p.status == "ok":
            f.add("ml_prediction_drift_score", "KS D of predictions vs reference.", p.score)
            f.add(
                "ml_prediction_drift_p_value", "KS p-value of predictions vs reference.", p.p_value
            )
            f.add(
                "ml_prediction_drift_detected",
                "1 when predictions drifted, else 0.",
                float(p.is_drifted),
            )
    current = result.current_performance
    if current is not None and current.metrics is not None:
        f.add(
            "ml_performance_batch_timestamp_seconds",
            "Latest batch day with enough label coverage.",
            day_start_seconds(current.batch_date),
        )
        f.add(
            "ml_label_coverage_ratio",
            "Labelled rows / batch rows of that batch.",
            current.label_coverage_ratio,
        )
        for field, (name, _) in PERFORMANCE_METRICS.items():
            f.add(
                name,
                f"{field.upper()} on that batch's labelled rows.",
                getattr(current.metrics, field),
            )
    for field, (_, baseline) in PERFORMANCE_METRICS.items():
        f.add(
            baseline,
            f"Holdout {field.upper()} from the model card.",
            getattr(result.baseline, field),
        )
    f.add(
        "ml_monitoring_last_success_timestamp_seconds",
        "When the nightly run succeeded.",
        run.finished_at_seconds,
    )
    f.add(
        "ml_monitoring_run_duration_seconds", "How long the nightly run took.", run.duration_seconds
    )
    return list(f.families.values())


class _Static(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def registry_for(families: Iterable[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families))
    return registry


def tls_context(
    *, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext | None:
    """A context trusting `ca_file` and presenting a client certificate, or None for defaults."""
    if not (ca_file or cert_file):
        return None
    context = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def auth_handler(
    username: str | None, password: str | None, *, tls: ssl.SSLContext | None = None
) -> Handler:
    """Basic auth when a username is configured, TLS settings when given, else the plain handler."""
    if tls is not None:
        return partial(_https_handler, username=username, password=password, context=tls)
    if not username:
        return default_handler
    return partial(basic_auth_handler, username=username, password=password)


def _https_handler(
    url: str,
    method: str,
    timeout: float | None,
    headers: Sequence[tuple[str, str]],
    data: bytes,
    *,
    username: str | None,
    password: str | None,
    context: ssl.SSLContext,
) -> Callable[[], None]:
    """prometheus_client's default handler with our own SSL context (and basic auth)."""

    def handle() -> None:
        request = urllib.request.Request(url, data=data, method=method)
        for key, value in headers:
            request.add_header(key, value)
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=timeout) as response:
            if response.status >= 400:
                raise OSError(f"error talking to pushgateway: {response.status} {response.reason}")

    return handle


def redact_url(url: str) -> str:
    """The URL without a password in it, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def failure_reason(exc: BaseException) -> str:
    """One line on why a push failed; the Pushgateway's answer names the offending metric."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            body = exc.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            body = ""
        answer = f" ({' '.join(body.split())[:300]})" if body else ""
        return f"HTTP {exc.code} {exc.reason}{answer}"
    return str(getattr(exc, "reason", None) or exc)


def push(
    result: MonitoringResult,
    run: RunStamp,
    *,
    gateway: str,
    handler: Handler = default_handler,
    timeout_seconds: float = 10,
) -> None:
    """Replace the model's group on the Pushgateway (HTTP PUT)."""
    push_to_gateway(
        gateway,
        job=JOB,
        registry=registry_for(metric_families(result, run)),
        grouping_key={"model": result.model},
        timeout=timeout_seconds,
        handler=handler,
    )

"""The Pushgateway transport: one PUT of a run's gauges (or one POST of a failed night's), over
HTTP or HTTPS, with basic auth.

prometheus_client does the push; this adds what it lacks for a locked-down Pushgateway (a CA
bundle and a client certificate) and the messages a failed push needs, with no password in them.
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from functools import partial

from prometheus_client import push_to_gateway, pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from core.settings import PushSettings
from tasks.export.catalogue import (
    JOB,
    FailureReason,
    RunStamp,
    failure_families,
    metric_families,
    registry_for,
)
from tasks.results.day import MonitoringResult

Handler = Callable[..., Callable[[], None]]


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


def push_failure(
    model: str,
    model_version: str,
    reason: FailureReason,
    at_seconds: float,
    *,
    gateway: str,
    handler: Handler = default_handler,
    timeout_seconds: float = 10,
) -> None:
    """Add a failed night's gauge to the model's group (HTTP POST): the last good night's stay."""
    pushadd_to_gateway(
        gateway,
        job=JOB,
        registry=registry_for(failure_families(model_version, reason, at_seconds)),
        grouping_key={"model": model},
        timeout=timeout_seconds,
        handler=handler,
    )


def handler_for(settings: PushSettings) -> Handler:
    """The handler that reaches the configured Pushgateway: TLS files, basic auth, or plain."""
    tls = tls_context(
        ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file
    )
    return auth_handler(settings.username, settings.password, tls=tls)


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

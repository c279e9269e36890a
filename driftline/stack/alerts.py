"""`driftline alerts`: what the local stack's Prometheus is about to fire or fires, and the
notifications Alertmanager delivered to the stack's receiver."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftline.stack.configs import RECEIVER_RECORD, StackConfig
from driftline.stack.receiver import read_notifications

SHOWN_NOTIFICATIONS = 20


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def rule_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Pending and firing alerts with when each fires: activeAt plus the rule's `for`."""
    groups = _get(f"{prometheus_url}/api/v1/rules?type=alert")["data"]["groups"]
    out = []
    for group in groups:
        for rule in group["rules"]:
            for alert in rule.get("alerts", []):
                active = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00"))
                fires_at = active.timestamp() + float(rule.get("duration", 0))
                out.append(
                    {
                        "alert": rule["name"],
                        "state": alert["state"],
                        "labels": alert["labels"],
                        "fires_at": fires_at,
                        "summary": alert.get("annotations", {}).get("summary", ""),
                    }
                )
    return sorted(out, key=lambda a: (a["state"] != "firing", a["fires_at"], a["alert"]))


def _latest_push(pushgateway_url: str) -> float | None:
    """When the Pushgateway last took a push of any group, Unix seconds; None for none."""
    groups = _get(f"{pushgateway_url}/api/v1/metrics")["data"]
    times = [
        float(sample["value"])
        for group in groups
        for sample in group.get("push_time_seconds", {}).get("metrics", [])
    ]
    return max(times, default=None)


def _scraped_push(prometheus_url: str) -> float | None:
    """The newest push time Prometheus has scraped, Unix seconds; None before any."""
    query = urllib.parse.quote("max(push_time_seconds)")
    found = _get(f"{prometheus_url}/api/v1/query?query={query}")["data"]["result"]
    return float(found[0]["value"][1]) if found else None


def _evaluated_since(prometheus_url: str, moment: float) -> bool:
    """Every rule group has been evaluated after `moment` (Unix seconds)."""
    groups = _get(f"{prometheus_url}/api/v1/rules")["data"]["groups"]
    return all(
        datetime.fromisoformat(g["lastEvaluation"].replace("Z", "+00:00")).timestamp() > moment
        for g in groups
    )


def _seconds(duration: str) -> float:
    """A Prometheus duration such as 15s or 1m, in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    return float(duration)


def wait_for_current(
    config: StackConfig,
    *,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until Prometheus has scraped the Pushgateway's latest push and evaluated its rules
    after that, saying so while it waits; False when that took longer than a few intervals."""
    prometheus = config.url("prometheus")
    pushed = _latest_push(config.url("pushgateway"))
    if pushed is None:
        return True  # nothing was pushed: the rules see all there is
    patience = 4 * (_seconds(config.scrape_interval) + _seconds(config.evaluation_interval))
    deadline = clock() + patience
    told = False
    scraped_at: float | None = None
    while True:
        if scraped_at is None:
            scraped = _scraped_push(prometheus)
            if scraped is not None and scraped >= pushed:
                scraped_at = time.time()
        if scraped_at is not None and _evaluated_since(prometheus, scraped_at):
            return True
        if not told:
            say(
                "waiting for Prometheus to scrape the latest push and evaluate its rules "
                f"(scrape every {config.scrape_interval}, rules every "
                f"{config.evaluation_interval})..."
            )
            told = True
        if clock() > deadline:
            say(f"Prometheus has not caught up after {patience:.0f} s; showing what it has now")
            return False
        pause(0.5)


def describe(alert: dict[str, Any], now: float) -> str:
    labels = alert["labels"]
    where = ", ".join(f"{k}={labels[k]}" for k in ("model", "feature") if k in labels)
    when = datetime.fromtimestamp(alert["fires_at"], UTC).strftime("%H:%M:%S UTC")
    if alert["state"] == "firing":
        state = f"firing since {when}"
    else:
        state = f"pending, fires at {when} (in {max(0, alert['fires_at'] - now):.0f} s)"
    return f"{alert['alert']:<32} {where:<40} {state}"


def main(config: StackConfig | None = None) -> int:
    """Print the alerts and the notifications; exit 1 when the stack is not up."""
    config = config or StackConfig.local()
    try:
        wait_for_current(config, say=lambda line: print(line, flush=True))
        alerts = rule_alerts(config.url("prometheus"))
    except (urllib.error.URLError, OSError) as error:
        print(
            f"driftline alerts: Prometheus or the Pushgateway of the stack does not answer "
            f"({error}); start the stack with: driftline stack up",
            flush=True,
        )
        return 1
    now = datetime.now(UTC).timestamp()
    # Debian's package ships the classic pages only: /alerts is not there, /classic/alerts is
    print(f"alerts in Prometheus ({config.url('prometheus')}/classic/alerts):")
    print("\n".join(f"  {describe(a, now)}" for a in alerts) or "  none pending or firing")
    notifications = read_notifications(config.state_dir / RECEIVER_RECORD)
    print(f"\nnotifications received ({len(notifications)}, in {_record(config)}):")
    for entry in notifications[-SHOWN_NOTIFICATIONS:]:
        received = datetime.fromtimestamp(entry["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        body = entry["notification"]
        names = sorted({a["labels"].get("alertname", "?") for a in body.get("alerts", [])})
        print(
            f"  {received} UTC  {body.get('status', '?'):<8} to {body.get('receiver', '?'):<10} "
            f"{', '.join(names)}"
        )
    if not notifications:
        print(
            "  none yet: an alert notifies once it has fired and Alertmanager's group wait passed"
        )
    return 0


def _record(config: StackConfig) -> Path:
    return config.state_dir / RECEIVER_RECORD

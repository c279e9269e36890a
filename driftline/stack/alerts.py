"""`driftline alerts`: what the local stack's Prometheus is about to fire or fires, and the
notifications Alertmanager delivered to the stack's receiver."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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
    now = datetime.now(UTC).timestamp()
    try:
        alerts = rule_alerts(config.url("prometheus"))
    except (urllib.error.URLError, OSError) as error:
        print(
            f"driftline alerts: Prometheus at {config.url('prometheus')} does not answer "
            f"({error}); start the stack with: driftline stack up",
            flush=True,
        )
        return 1
    print(f"alerts in Prometheus ({config.url('prometheus')}/alerts):")
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

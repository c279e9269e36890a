"""Draw the Grafana dashboard from its JSON, with the data its own queries return from Prometheus.

    .venv/bin/python scripts/draw_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --out docs/dashboard.png [--model M] [--feature REGEX] [--range 30d] [--end TIME]

No Grafana runs here, so this draws what Grafana would show: every panel of
infra/grafana/dashboards/driftline-model-monitoring.json at its gridPos, each target's PromQL with
the dashboard's variables substituted ($model defaults to the first value of the variable's own
label_values query, $feature to All), run against a live Prometheus over the dashboard's time
range (its `time.from`, `now-30d`, unless --range says otherwise) with Grafana's step for the
panel's width; the panel types (stat, timeseries, table, alertlist), units, decimals,
thresholds, overrides, value mappings, table transformations and the dashboard's annotations
(production version changes, alerts firing) as Grafana applies them. The picture is PNG or SVG
by the --out suffix. `scripts.dashboard.snapshot` gathers the data (its `empty_panels()` lets tests
check that no panel is empty); `scripts.dashboard.panels` draws it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from scripts.dashboard.panels import draw, save
from scripts.dashboard.snapshot import (
    empty_panels,
    seconds_of,
    snapshot,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "driftline-model-monitoring.json"
OUTPUT = REPO_ROOT / "docs" / "dashboard.png"


def _end_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="a .png or .svg file")
    parser.add_argument("--model", help="the $model variable (default: its first value)")
    parser.add_argument("--feature", help="the $feature variable as a regex (default: All)")
    parser.add_argument(
        "--range", dest="span", help="the time range, e.g. 30d (default: the dashboard's own)"
    )
    parser.add_argument("--end", help="the range's end, unix seconds or ISO time (default: now)")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    args = parser.parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text(encoding="utf-8"))
    try:
        snap = snapshot(
            dashboard,
            args.prometheus,
            model=args.model,
            feature=args.feature,
            range_seconds=seconds_of(args.span) if args.span else None,
            end=_end_time(args.end),
        )
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"draw_dashboard: {exc}", file=sys.stderr)
        return 1
    save(draw(snap), args.out)
    empty = empty_panels(snap)
    print(f"wrote {args.out} ({len(snap.panels)} panels, {len(snap.annotations)} annotations)")
    for line in empty:
        print(f"  empty: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Draw the Grafana dashboard's layout from its JSON as an SVG (no Grafana needed).

python scripts/draw_dashboard.py            # writes docs/dashboard.svg
python scripts/draw_dashboard.py --check    # exit 1 if docs/dashboard.svg is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html import escape
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "driftline-model-monitoring.json"
OUTPUT = REPO_ROOT / "docs" / "dashboard.svg"

COLUMN_PX = 50  # Grafana's grid is 24 columns wide
ROW_PX = 30  # and one grid unit tall is 30 px
HEADER_PX = 64
MARGIN_PX = 8
PANEL_FILL = {
    "stat": "#e8f4ea",
    "timeseries": "#e9f0fb",
    "table": "#fdf3e3",
    "alertlist": "#fbe9e9",
}
METRIC = re.compile(r"\b(ml_\w+|ALERTS)(?=\{)")


def draw(dashboard: dict[str, Any]) -> str:
    """Return the SVG text for a dashboard's panels, variables and time range."""
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width = 24 * COLUMN_PX + 2 * MARGIN_PX
    height = HEADER_PX + rows * ROW_PX + 2 * MARGIN_PX
    variables = "   ".join(f"{v['label']}: ${v['name']}" for v in dashboard["templating"]["list"])
    time_range = f"{dashboard['time']['from']} .. {dashboard['time']['to']}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{MARGIN_PX}" y="26" font-size="18" font-weight="bold">'
        f"{escape(dashboard['title'])}</text>",
        f'<text x="{MARGIN_PX}" y="50" font-size="13" fill="#444">{escape(variables)}</text>',
        f'<text x="{width - MARGIN_PX}" y="50" font-size="13" fill="#444" text-anchor="end">'
        f"time range {escape(time_range)}</text>",
    ]
    for panel in panels:
        parts.extend(_panel(panel))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(panel: dict[str, Any]) -> list[str]:
    grid = panel["gridPos"]
    x = MARGIN_PX + grid["x"] * COLUMN_PX + 3
    y = HEADER_PX + grid["y"] * ROW_PX + 3
    w = grid["w"] * COLUMN_PX - 6
    h = grid["h"] * ROW_PX - 6
    fill = PANEL_FILL.get(panel["type"], "#f2f2f2")
    metrics = sorted(
        {m for t in panel.get("targets", []) for m in METRIC.findall(t["expr"])}
        or (["ALERTS"] if panel["type"] == "alertlist" else [])
    )
    parts = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="{fill}" stroke="#9aa5b1"/>',
        f'<text x="{x + 8}" y="{y + 18}" font-size="13" font-weight="bold">'
        f"{escape(panel['title'])}</text>",
        f'<text x="{x + w - 8}" y="{y + 18}" font-size="11" fill="#666" text-anchor="end">'
        f"{escape(panel['type'])}</text>",
        *_glyph(panel["type"], x, y + 26, w, h - 26 - 14 * min(len(metrics), 3)),
    ]
    for i, metric in enumerate(metrics[:3]):
        line_y = y + h - 6 - 14 * (min(len(metrics), 3) - 1 - i)
        parts.append(
            f'<text x="{x + 8}" y="{line_y}" font-size="10" fill="#555" '
            f'font-family="monospace">{escape(metric)}</text>'
        )
    return parts


def _glyph(kind: str, x: int, y: int, w: int, h: int) -> list[str]:
    """A small sketch of what the panel type shows, inside the panel body."""
    if h < 12:
        return []
    if kind == "stat":
        return [
            f'<text x="{x + w // 2}" y="{y + h // 2 + 8}" font-size="24" fill="#2f7d3b" '
            f'text-anchor="middle">123</text>'
        ]
    if kind == "timeseries":
        steps = 8
        points = " ".join(
            f"{x + 10 + i * (w - 20) // steps},{y + h - 6 - ((i * 7) % 5 + 1) * (h - 12) // 6}"
            for i in range(steps + 1)
        )
        return [f'<polyline points="{points}" fill="none" stroke="#3d71d9" stroke-width="2"/>']
    if kind in {"table", "alertlist"}:
        lines = max(1, min(5, h // 18))
        return [
            f'<rect x="{x + 10}" y="{y + 4 + i * 18}" width="{w - 20}" height="10" '
            f'fill="#ffffff" stroke="#d0d5db"/>'
            for i in range(lines)
        ]
    return []


def main(argv: list[str] | None = None) -> int:
    """Write the SVG, or with --check report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the SVG is out of date")
    args = parser.parse_args(argv)
    svg = draw(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != svg:
            print(f"{OUTPUT} is out of date; run python scripts/draw_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

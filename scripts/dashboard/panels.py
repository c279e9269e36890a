"""The dashboard drawn as Grafana draws it: stat, table and alert-list panels (timeseries in
timeseries.py), each at its gridPos."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from scripts.dashboard.fields import cell_text, field_config, value_color
from scripts.dashboard.grafana import png_bytes, unit_text
from scripts.dashboard.snapshot import (
    COLUMN_PX,
    HEADER_PX,
    MARGIN_PX,
    ROW_PX,
    PanelData,
    Snapshot,
    duration_text,
)
from scripts.dashboard.timeseries import annotation_groups, timeseries_panel
from tasks.reports import plots
from tasks.reports.plots import MUTED, TEXT


def _panel_rect(panel: dict[str, Any], height: float) -> tuple[float, float, float, float]:
    """(x, y, w, h) in pixels from the bottom left, inside the panel's grid cell."""
    grid = panel["gridPos"]
    x = MARGIN_PX + grid["x"] * COLUMN_PX + 4
    top = HEADER_PX + grid["y"] * ROW_PX + 4
    w = grid["w"] * COLUMN_PX - 8
    h = grid["h"] * ROW_PX - 8
    return x, height - top - h, w, h


def _frame(ax: Any, rect: tuple[float, float, float, float], title: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    x, y, w, h = rect
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=4", fc="white", ec="#D8DCE1", lw=1
        )
    )
    ax.text(
        x + 10, y + h - 9, title, ha="left", va="top", fontsize=10, fontweight="bold", color=TEXT
    )


def _row(ax: Any, data: PanelData, rect: tuple[float, float, float, float]) -> None:
    """A row's header as Grafana draws it: the title, and how many panels a collapsed row holds."""
    x, y, w, h = rect
    inside = data.panel.get("panels", [])
    collapsed = data.panel.get("collapsed", False)
    title = f"{'>' if collapsed else 'v'}  {data.title}"
    if collapsed and inside:
        title += f"  ({len(inside)} panels)"
    ax.text(x + 4, y + h / 2, title, ha="left", va="center", fontsize=11, fontweight="bold",
            color=TEXT)  # fmt: skip
    ax.plot([x, x + w], [y, y], color="#D8DCE1", lw=1)


def _stat(ax: Any, data: PanelData, rect: tuple[float, float, float, float]) -> None:
    from matplotlib.patches import FancyBboxPatch

    x, y, w, h = rect
    body = (x + 8, y + 8, w - 16, h - 36)
    fields = [s for s in data.series]
    if not fields:
        ax.text(
            x + w / 2, y + h / 2 - 10, "No data", ha="center", va="center", fontsize=12, color=MUTED
        )
        return
    bw = (body[2] - 6 * (len(fields) - 1)) / len(fields)
    for i, series in enumerate(fields):
        config = field_config(data.panel, series.ref, series.name)
        value = series.last
        color = value_color(config, value)
        bx = body[0] + i * (bw + 6)
        ax.add_patch(
            FancyBboxPatch(
                (bx, body[1]),
                bw,
                body[3],
                boxstyle="round,pad=0,rounding_size=3",
                fc=color,
                ec="none",
            )
        )
        finite = np.isfinite(series.values)
        if finite.sum() > 1:  # graphMode area: the sparkline along the bottom
            t, v = series.times[finite], series.values[finite]
            low, high = float(v.min()), float(v.max())
            span_t = (t[-1] - t[0]) or 1.0
            span_v = (high - low) or 1.0
            px = bx + (t - t[0]) / span_t * bw
            py = body[1] + 3 + (v - low) / span_v * body[3] * 0.35
            ax.fill_between(px, body[1], py, color="white", alpha=0.18, lw=0)
            ax.plot(px, py, color="white", alpha=0.7, lw=1.1)
        text = unit_text(value, config.get("unit"), config.get("decimals"))
        ax.text(
            bx + bw / 2,
            body[1] + body[3] * 0.52,
            text,
            ha="center",
            va="center",
            fontsize=19 if len(text) < 9 else 15,
            fontweight="bold",
            color="white",
        )
        ax.text(
            bx + bw / 2,
            body[1] + body[3] - 6,
            series.name,
            ha="center",
            va="top",
            fontsize=8.5,
            color="white",
        )


def _table_panel(ax: Any, data: PanelData, rect: tuple[float, float, float, float]) -> None:
    x, y, w, h = rect
    columns = data.columns
    if not data.rows:
        ax.text(
            x + w / 2, y + h / 2 - 10, "No data", ha="center", va="center", fontsize=12, color=MUTED
        )
        return
    weights = [1.6 if c == "feature" else 1.0 for c in columns]
    widths = [(w - 16) * wt / sum(weights) for wt in weights]
    lefts = [x + 8 + sum(widths[:i]) for i in range(len(columns))]
    top = y + h - 34
    row_h = 20.0
    ax.plot([x + 8, x + w - 8], [top - row_h + 3] * 2, color="#D8DCE1", lw=0.8)
    for left, column in zip(lefts, columns, strict=True):
        ax.text(
            left + 4,
            top - row_h / 2,
            column,
            ha="left",
            va="center",
            fontsize=8,
            fontweight="bold",
            color=MUTED,
        )
    fits = int((h - 40) // row_h) - 1
    rows = data.rows if len(data.rows) <= fits else data.rows[: fits - 1]
    from matplotlib.patches import Rectangle

    for i, row in enumerate(rows):
        row_y = top - (i + 1.5) * row_h
        for left, width, column in zip(lefts, widths, columns, strict=True):
            value = row.get(column)
            config = field_config(data.panel, None, column)
            cell = config.get("custom", {}).get("cellOptions", {}).get("type", "auto")
            text, color, fill = cell_text(value, config)
            if cell == "color-background" and fill:
                ax.add_patch(
                    Rectangle(
                        (left + 1, row_y - row_h / 2 + 2), width - 2, row_h - 4, fc=fill, ec="none"
                    )
                )
                color = "white"
            elif cell == "color-text" and fill:
                color = fill
            ax.text(left + 4, row_y, text, ha="left", va="center", fontsize=8, color=color)
        ax.plot([x + 8, x + w - 8], [row_y - row_h / 2 + 1] * 2, color="#EEF0F2", lw=0.6)
    if len(rows) < len(data.rows):
        ax.text(
            x + 12,
            top - (len(rows) + 1.5) * row_h,
            f"+{len(data.rows) - len(rows)} rows",
            ha="left",
            va="center",
            fontsize=8,
            color=MUTED,
        )


def _alert_panel(ax: Any, data: PanelData, rect: tuple[float, float, float, float]) -> None:
    x, y, w, h = rect
    if not data.alerts:
        ax.text(
            x + w / 2,
            y + h / 2 - 10,
            "No alerts",
            ha="center",
            va="center",
            fontsize=12,
            color=MUTED,
        )
        return
    row_h = 30.0
    fits = int((h - 34) // row_h)
    shown = data.alerts if len(data.alerts) <= fits else data.alerts[: fits - 1]
    now = time.time()
    for i, alert in enumerate(shown):
        row_y = y + h - 36 - i * row_h
        state = alert["state"]
        color = plots.RED if state == "firing" else plots.ORANGE
        ax.plot([x + 12, x + 12], [row_y - 22, row_y - 2], color=color, lw=4, solid_capstyle="butt")
        labels = alert["labels"]
        ax.text(
            x + 20,
            row_y,
            labels.get("alertname", "?"),
            ha="left",
            va="top",
            fontsize=8.5,
            fontweight="bold",
            color=TEXT,
        )
        detail = ", ".join(
            f"{k}={v}" for k, v in labels.items() if k in ("feature", "severity", "model_version")
        )
        ax.text(x + 20, row_y - 13, detail, ha="left", va="top", fontsize=7.5, color=MUTED)
        since = alert.get("activeAt", "")
        age = ""
        if since:
            started = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", since[:-1]) + "+00:00")
            age = f"for {unit_text(max(0.0, now - started.timestamp()), 's', 0)}"
        ax.text(
            x + w - 12,
            row_y,
            f"{state.upper()}  {age}",
            ha="right",
            va="top",
            fontsize=7.5,
            color=color,
            fontweight="bold",
        )
    if len(shown) < len(data.alerts):
        ax.text(
            x + 20,
            y + h - 36 - len(shown) * row_h,
            f"+{len(data.alerts) - len(shown)} more",
            ha="left",
            va="top",
            fontsize=8,
            color=MUTED,
        )


def draw(snap: Snapshot) -> Any:
    """The dashboard as a matplotlib figure."""
    dashboard = snap.dashboard
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    width = 24 * COLUMN_PX + 2 * MARGIN_PX
    height = HEADER_PX + rows * ROW_PX + MARGIN_PX
    fig = plots.figure(width, height)
    fig.set_facecolor("#F4F5F5")
    ax = plots.canvas(fig)
    ax.set_zorder(-1)
    ax.text(
        MARGIN_PX + 4,
        height - 12,
        dashboard["title"],
        ha="left",
        va="top",
        fontsize=15,
        fontweight="bold",
        color=TEXT,
    )
    x = MARGIN_PX + 4.0
    for variable in dashboard.get("templating", {}).get("list", []):
        label = f"{variable.get('label', variable['name'])}  {snap.shown[variable['name']]}"
        ax.text(
            x,
            height - 48,
            label,
            ha="left",
            va="center",
            fontsize=9,
            color=TEXT,
            bbox={"boxstyle": "round,pad=0.35", "fc": "white", "ec": "#C9CED4"},
        )
        x += 30 + 7.0 * len(label)
    span = duration_text(snap.end - snap.start)
    stamp = datetime.fromtimestamp(snap.end, UTC).strftime("%Y-%m-%d %H:%M")
    ax.text(
        width - MARGIN_PX - 4,
        height - 14,
        f"Last {span} to {stamp} UTC",
        ha="right",
        va="top",
        fontsize=9.5,
        color=TEXT,
    )
    ax.text(
        width - MARGIN_PX - 4,
        height - 32,
        f"drawn from {snap.prometheus_url} by scripts/draw_dashboard.py (each panel's own query)",
        ha="right",
        va="top",
        fontsize=7.5,
        color=MUTED,
    )
    x = MARGIN_PX + 4.0
    for start, text, color in annotation_groups(snap.annotations):
        when = datetime.fromtimestamp(start, UTC).strftime("%m-%d %H:%M")
        label = f"▲ {text} ({when})"
        ax.text(x, height - 76, label, ha="left", va="center", fontsize=8, color=color)
        x += 24 + 6.0 * len(label)
        if x > width - 200:
            break
    first_series = True
    for data in snap.panels:
        rect = _panel_rect(data.panel, height)
        kind = data.panel["type"]
        if kind == "row":
            _row(ax, data, rect)
            continue
        _frame(ax, rect, data.title)
        if kind == "stat":
            _stat(ax, data, rect)
        elif kind == "timeseries":
            timeseries_panel(fig, ax, data, rect, snap, label_annotations=first_series)
            first_series = False
        elif kind == "table":
            _table_panel(ax, data, rect)
        elif kind == "alertlist":
            _alert_panel(ax, data, rect)
    return fig


def save(fig: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(plots.svg_bytes(fig) if out.suffix == ".svg" else png_bytes(fig))

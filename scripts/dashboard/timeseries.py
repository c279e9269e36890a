"""The timeseries panel as Grafana draws it: lines, its legend table and the annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scripts.dashboard.fields import field_config
from scripts.dashboard.grafana import PALETTE, named_color, unit_text
from scripts.dashboard.snapshot import MIN_STEP_SECONDS, Annotation, PanelData, Snapshot
from tasks.reports import plots
from tasks.reports.plots import MUTED, TEXT


def _legend_table(
    ax: Any, data: PanelData, colors: list[str], rect: tuple[float, float, float, float]
) -> None:
    x, y, w, h = rect
    calcs = data.panel.get("options", {}).get("legend", {}).get("calcs", [])
    names = {"lastNotNull": "Last *", "max": "Max", "mean": "Mean", "min": "Min"}
    col_w = 52
    name_w = w - col_w * len(calcs)
    top = y + h - 4
    for j, calc in enumerate(calcs):
        ax.text(
            x + name_w + (j + 1) * col_w - 4,
            top,
            names.get(calc, calc),
            ha="right",
            va="top",
            fontsize=7.5,
            color=MUTED,
            fontweight="bold",
        )
    row_h = 14.5
    fits = max(1, int((h - 18) // row_h))
    shown = data.series if len(data.series) <= fits else data.series[: fits - 1]
    for i, (series, color) in enumerate(zip(shown, colors, strict=False)):
        row_y = top - 18 - i * row_h
        ax.plot([x, x + 12], [row_y - 4] * 2, color=color, lw=3, solid_capstyle="butt")
        limit = int((name_w - 20) / 5.2)
        name = series.name if len(series.name) <= limit else series.name[: limit - 1] + "…"
        ax.text(x + 16, row_y, name, ha="left", va="top", fontsize=7.5, color=TEXT)
        config = field_config(data.panel, series.ref, series.name)
        for j, calc in enumerate(calcs):
            value = series.last if calc == "lastNotNull" else series.max
            ax.text(
                x + name_w + (j + 1) * col_w - 4,
                row_y,
                unit_text(value, config.get("unit"), config.get("decimals")),
                ha="right",
                va="top",
                fontsize=7.5,
                color=TEXT,
            )
    if len(shown) < len(data.series):
        ax.text(
            x + 16,
            top - 18 - len(shown) * row_h,
            f"+{len(data.series) - len(shown)} more",
            ha="left",
            va="top",
            fontsize=7.5,
            color=MUTED,
        )


def timeseries_panel(
    fig: Any,
    ax: Any,
    data: PanelData,
    rect: tuple[float, float, float, float],
    snap: Snapshot,
    label_annotations: bool,
) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    x, y, w, h = rect
    fig_w, fig_h = fig.get_size_inches() * fig.dpi
    legend = data.panel.get("options", {}).get("legend", {})
    legend_w = max(230.0, w * 0.36) if legend.get("placement") == "right" else 0.0
    plot = (x + 48, y + 24, w - 58 - legend_w, h - 58)
    axes = fig.add_axes((plot[0] / fig_w, plot[1] / fig_h, plot[2] / fig_w, plot[3] / fig_h))
    defaults = field_config(data.panel, None)
    custom = defaults.get("custom", {})
    step = data.step or MIN_STEP_SECONDS
    colors = []
    for i, series in enumerate(data.series):
        config = field_config(data.panel, series.ref, series.name)
        color = (
            named_color(config["color"]["fixedColor"])
            if config.get("color", {}).get("mode") == "fixed"
            else PALETTE[i % len(PALETTE)]
        )
        colors.append(color)
        times, values = series.times, series.values
        if times.size == 0:
            continue
        if not config["custom"].get("spanNulls", False):  # a gap in the data is a gap in the line
            gaps = np.flatnonzero(np.diff(times) > step * 1.5)
            times = np.insert(times, gaps + 1, times[gaps] + step)
            values = np.insert(values, gaps + 1, np.nan)
        when = times.astype("datetime64[s]")
        style = config["custom"].get("lineStyle", {})
        dashes = (0, tuple(d / 2.5 for d in style.get("dash", [10, 10]))) if style else "solid"
        width = config["custom"].get("lineWidth", 1) * 0.75
        if config["custom"].get("drawStyle") == "bars":
            axes.bar(
                when,
                np.nan_to_num(values),
                width=np.timedelta64(int(step), "s"),
                color=color,
                alpha=0.85,
                lw=0,
            )
            continue
        show_points = config["custom"].get("showPoints") == "always" and times.size <= 200
        axes.plot(
            when,
            values,
            color=color,
            lw=width,
            ls=dashes,
            marker="o" if show_points else None,
            ms=2.5,
        )
    low, high = defaults.get("min"), defaults.get("max")
    if low is not None or high is not None:
        axes.set_ylim(low, high)
    thresholds = custom.get("thresholdsStyle", {}).get("mode", "off")
    if thresholds != "off":
        steps = defaults.get("thresholds", {}).get("steps", [])
        top = axes.get_ylim()[1]
        for k, threshold in enumerate(steps):
            if threshold["value"] is None or named_color(threshold["color"]) == "none":
                continue
            color = named_color(threshold["color"])
            axes.axhline(threshold["value"], color=color, lw=1, ls=(0, (4, 3)))
            if "area" in thresholds:
                upper = steps[k + 1]["value"] if k + 1 < len(steps) else top
                axes.axhspan(threshold["value"], upper, color=color, alpha=0.05, lw=0)
    for note in snap.annotations:
        left, right = note.start, max(note.end, note.start)
        axes.axvline(
            np.datetime64(int(left), "s"), color=note.color, lw=1, ls=(0, (3, 2)), alpha=0.9
        )
        if right - left > step:
            axes.axvspan(
                np.datetime64(int(left), "s"),
                np.datetime64(int(right), "s"),
                color=note.color,
                alpha=0.07,
                lw=0,
            )
    if label_annotations:
        for when_s, text, color in annotation_groups(snap.annotations):
            axes.annotate(
                text if len(text) <= 30 else text[:29] + "…",
                (np.datetime64(int(when_s), "s"), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-3, -3),
                textcoords="offset points",
                rotation=90,
                ha="right",
                va="top",
                fontsize=6.5,
                color=color,
            )
    axes.set_xlim(np.datetime64(int(snap.start), "s"), np.datetime64(int(snap.end), "s"))
    span = snap.end - snap.start
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d" if span > 2 * 86400 else "%H:%M"))
    axes.xaxis.set_major_locator(
        MaxNLocator(7) if span <= 2 * 86400 else mdates.AutoDateLocator(minticks=4, maxticks=8)
    )
    unit, decimals = defaults.get("unit"), defaults.get("decimals")
    axes.yaxis.set_major_locator(MaxNLocator(5))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v, unit, decimals)))
    axes.tick_params(labelsize=7.5, colors=MUTED, length=2)
    axes.grid(color=plots.GRID, lw=0.6)
    axes.set_axisbelow(True)
    for spine in axes.spines.values():
        spine.set_color("#D8DCE1")
    if not data.series:
        axes.text(
            0.5,
            0.5,
            "No data",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=12,
            color=MUTED,
        )
    if legend_w:
        _legend_table(ax, data, colors, (x + w - legend_w - 4, y + 8, legend_w - 6, h - 34))


def _tick(value: float, unit: str | None, decimals: int | None) -> str:
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit in (None, "none", "short"):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return unit_text(value, unit, decimals)


def annotation_groups(notes: Sequence[Annotation]) -> list[tuple[float, str, str]]:
    """Annotations that start together as one label: 'MLFeatureDrift x4, MLPredictionDrift'."""
    groups: dict[tuple[int, str], list[str]] = {}
    colors: dict[tuple[int, str], str] = {}
    for note in notes:
        key = (int(note.start // 3600), note.name)
        groups.setdefault(key, []).append(note.title)
        colors[key] = note.color
    out = []
    for key, titles in sorted(groups.items()):
        counted = {t: titles.count(t) for t in titles}
        text = ", ".join(t if n == 1 else f"{t} x{n}" for t, n in counted.items())
        start = min(n.start for n in notes if (int(n.start // 3600), n.name) == key)
        out.append((start, text, colors[key]))
    return out

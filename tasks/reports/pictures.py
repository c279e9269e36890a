"""The nightly report's pictures: reference against current for each pictured feature and the
prediction, and the performance window against the baseline (drawn with tasks/reports/plots.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from core.settings import DEFAULT_ALERT_THRESHOLDS, AlertThresholds
from model_registry.registry import HoldoutMetrics
from tasks.performance.window import RegressionMetrics
from tasks.reports.numbers import p_text, percent, sig3
from tasks.reports.plots import (
    BLUE,
    CURRENT_COLOR,
    DRAWING,
    GAP_COLOR,
    MUTED,
    REFERENCE_COLOR,
    TEXT,
    Box,
    canvas,
    figure,
    nice_limits,
    svg_bytes,
)
from tasks.stats.sketches import CategoricalSketch, NumericSketch, Sketch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from tasks.results.day import MonitoringResult
    from tasks.stats.drift import FeatureDrift

CELL_W, CELL_H, COLUMNS = 330, 232, 3


def _verdict(drift: FeatureDrift) -> tuple[str, str]:
    if drift.status != "ok":
        return "too little data to test", MUTED
    return ("drifted", GAP_COLOR) if drift.is_drifted else ("not drifted", "#3E8E41")


def _detail(drift: FeatureDrift) -> str:
    if drift.status != "ok":
        return f"{drift.n_current:,} value(s) in the batch, {drift.n_reference:,} in the reference"
    score = "KS distance D" if drift.test == "ks" else "total variation distance"
    p = drift.p_value_adjusted if math.isfinite(drift.p_value_adjusted) else drift.p_value
    return f"{score} {sig3(drift.score)}, adjusted p {p_text(p)}"


def _numeric_cell(ax: Axes, box: tuple[float, float, float, float], sketch: NumericSketch) -> None:
    x0, y0, w, h = box
    if not sketch.n_reference or not sketch.n_current:
        which = "this batch" if not sketch.n_current else "the reference"
        ax.text(x0 + w / 2, y0 + h / 2, f"no values in {which}\n(all missing)", ha="center",
                va="center", fontsize=9, color=MUTED)  # fmt: skip
    xs = [*sketch.reference_x, *sketch.current_x]
    if xs:
        # the axis spans the middle 98% of both samples (and the gap), not a stray extreme
        ends = [
            (
                float(x[min(int(np.searchsorted(f, 0.01)), x.size - 1)]),
                float(x[min(int(np.searchsorted(f, 0.99)), x.size - 1)]),
            )
            for x, f in (
                (sketch.reference_x, sketch.reference_f),
                (sketch.current_x, sketch.current_f),
            )
            if x.size
        ]
        low, high = min(e[0] for e in ends), max(e[1] for e in ends)
        if math.isfinite(sketch.gap_x):
            low, high = min(low, sketch.gap_x), max(high, sketch.gap_x)
        xlim = nice_limits([float(low), float(high)])
    else:
        xlim = (0.0, 1.0)
    plot = Box(ax, box, xlim, (0.0, 1.0))
    plot.frame(grid_y=(0.25, 0.5, 0.75))
    for x, f, color in (
        (sketch.reference_x, sketch.reference_f, REFERENCE_COLOR),
        (sketch.current_x, sketch.current_f, CURRENT_COLOR),
    ):
        if x.size:
            inside = (x >= xlim[0]) & (x <= xlim[1])
            before = f[~inside & (x < xlim[0])]
            start = float(before[-1]) if before.size else 0.0
            px = np.concatenate([[xlim[0]], x[inside], [xlim[1]]])
            pf = np.concatenate([[start], f[inside], [f[inside][-1] if inside.any() else start]])
            plot.line(px, pf, color=color, lw=1.6, drawstyle="steps-post")
    if math.isfinite(sketch.gap_x):
        gx = float(plot.px(sketch.gap_x))
        low, high = sorted((sketch.gap_reference, sketch.gap_current))
        ax.plot([gx, gx], [plot.py(low), plot.py(high)], color=GAP_COLOR, lw=2.2)
        ax.plot([gx, gx], [plot.py(low), plot.py(high)], ls="none", marker="_", ms=8,
                mew=2, color=GAP_COLOR)  # fmt: skip
        right = gx < x0 + w * 0.7
        ax.text(gx + (5 if right else -5), float(plot.py((low + high) / 2)),
                f"D = {sig3(high - low)}", ha="left" if right else "right", va="center",
                fontsize=8, color=GAP_COLOR, fontweight="bold")  # fmt: skip
    ticks = [xlim[0] + (xlim[1] - xlim[0]) * t for t in (0.04 / 1.08, 0.5, 1.04 / 1.08)]
    plot.xlabels(ticks, [sig3(t) for t in ticks])
    plot.ylabels([0.0, 0.5, 1.0], ["0", "0.5", "1"])
    if sketch.sampled:
        ax.text(x0 + w - 3, y0 + 3, f"current: {sketch.sampled:,}-value sample", ha="right",
                va="bottom", fontsize=6.5, color=MUTED)  # fmt: skip


def _category_cell(
    ax: Axes, box: tuple[float, float, float, float], sketch: CategoricalSketch
) -> None:
    x0, y0, w, h = box
    rows: list[tuple[str, float, float, str]] = []
    for name, ref, cur in zip(
        sketch.categories, sketch.reference_shares, sketch.current_shares, strict=True
    ):
        mark = " (new)" if name in sketch.new else " (gone)" if name in sketch.gone else ""
        label = (name if len(name) <= 14 else name[:13] + "…") + mark
        rows.append((label, ref, cur, GAP_COLOR if mark else TEXT))
    if sketch.n_other:
        rows.append(
            (f"{sketch.n_other:,} other", sketch.other_reference, sketch.other_current, MUTED)
        )
    if not rows:
        ax.text(x0 + w / 2, y0 + h / 2, "no values in either sample", ha="center",
                va="center", fontsize=9, color=MUTED)  # fmt: skip
        return
    label_w = 92
    top = max(max(r[1], r[2]) for r in rows) or 1.0
    plot = Box(ax, (x0 + label_w, y0, w - label_w - 34, h), (0.0, top), (len(rows), 0.0))
    plot.frame()
    bar = min(7.0, h / len(rows) / 2.6)
    for i, (label, ref, cur, color) in enumerate(rows):
        middle = float(plot.py(i + 0.5))
        ax.text(x0 + label_w - 4, middle, label, ha="right", va="center", fontsize=7.5,
                color=color)  # fmt: skip
        for share, offset, fill in ((ref, bar / 2 + 0.5, REFERENCE_COLOR),
                                    (cur, -bar / 2 - 0.5, CURRENT_COLOR)):  # fmt: skip
            end = float(plot.px(share))
            ax.plot([plot.x0, max(end, plot.x0 + 0.8)], [middle + offset] * 2, color=fill,
                    lw=bar * 0.75, solid_capstyle="butt")  # fmt: skip
        ax.text(float(plot.px(max(ref, cur))) + 3, middle, percent(cur), ha="left",
                va="center", fontsize=6.5, color=CURRENT_COLOR)  # fmt: skip
    notes = []
    if sketch.n_new:
        notes.append(f"{sketch.n_new:,} new")
    if sketch.n_gone:
        notes.append(f"{sketch.n_gone:,} gone")
    if notes:
        ax.text(x0 + w - 2, y0 - 4, "categories: " + ", ".join(notes), ha="right", va="top",
                fontsize=7, color=GAP_COLOR)  # fmt: skip


def drift_picture(items: Sequence[tuple[FeatureDrift, Sketch]]) -> bytes:
    """Reference against current for each (feature, sketch), three to a row, as SVG bytes."""
    rows = max(1, math.ceil(len(items) / COLUMNS))
    columns = min(COLUMNS, max(1, len(items)))
    legend_h = 26
    with DRAWING:
        fig = figure(columns * CELL_W, rows * CELL_H + legend_h)
        ax = canvas(fig)
        height = rows * CELL_H + legend_h
        x = 10.0
        for label, color in (("reference", REFERENCE_COLOR), ("this batch", CURRENT_COLOR)):
            ax.plot([x, x + 18], [height - 13] * 2, color=color, lw=2.5)
            ax.text(x + 22, height - 13, label, va="center", fontsize=8.5, color=TEXT)
            x += 105
        ax.plot([x + 9, x + 9], [height - 20, height - 6], color=GAP_COLOR, lw=2.2)
        ax.text(x + 16, height - 13, "largest gap between the ECDFs (KS distance D)",
                va="center", fontsize=8.5, color=TEXT)  # fmt: skip
        for i, (drift, sketch) in enumerate(items):
            left = (i % COLUMNS) * CELL_W
            bottom = height - legend_h - (i // COLUMNS + 1) * CELL_H
            verdict, color = _verdict(drift)
            ax.text(left + 12, bottom + CELL_H - 8, drift.feature, ha="left", va="top",
                    fontsize=10, fontweight="bold", color=TEXT)  # fmt: skip
            ax.text(left + CELL_W - 10, bottom + CELL_H - 8, verdict, ha="right", va="top",
                    fontsize=9, fontweight="bold", color=color)  # fmt: skip
            ax.text(left + 12, bottom + CELL_H - 26, _detail(drift), ha="left", va="top",
                    fontsize=7.5, color=MUTED)  # fmt: skip
            box = (left + 40.0, bottom + 24.0, CELL_W - 52.0, CELL_H - 70.0)
            if isinstance(sketch, NumericSketch):
                _numeric_cell(ax, box, sketch)
            else:
                _category_cell(ax, box, sketch)
        return svg_bytes(fig)


def performance_picture(
    result: MonitoringResult, thresholds: AlertThresholds = DEFAULT_ALERT_THRESHOLDS
) -> bytes | None:
    """Realized MAE per batch of the window with its label coverage, the estimate when the
    result has one, the baseline and the alert line above it; None with no batch."""
    batches = result.performance
    if not isinstance(result.baseline, HoldoutMetrics):
        from tasks.reports.classifier_pictures import classifier_performance_picture

        return classifier_performance_picture(result, thresholds)
    if not batches:
        return None
    first = batches[0].batch_date
    days = [(b.batch_date - first).days for b in batches]
    last_day = max(days[-1], (result.batch_date - first).days)
    baseline = result.baseline.mae
    alert = thresholds.performance_alert_ratio * baseline
    estimate = getattr(result, "estimate", None)
    est_mae = getattr(estimate, "mae", None)
    est_low = getattr(estimate, "mae_lower", None)
    est_high = getattr(estimate, "mae_upper", None)
    maes = [b.metrics.mae for b in batches if isinstance(b.metrics, RegressionMetrics)]
    levels = [*maes, alert * 1.04, baseline * 0.8]  # the alert line stays inside the frame
    levels += [v for v in (est_mae, est_low, est_high) if isinstance(v, float)]
    ylim = (0.0, max(v for v in levels if math.isfinite(v)) * 1.08) if maes or baseline else (0, 1)
    width, height = 990, 320
    with DRAWING:
        fig = figure(width, height)
        ax = canvas(fig)
        xlim = (-0.6, last_day + 0.6)
        top = Box(ax, (70, 112, width - 90, height - 180), xlim, ylim)
        low = Box(ax, (70, 28, width - 90, 62), xlim, (0.0, 1.0))
        grid = [ylim[1] * t for t in (0.25, 0.5, 0.75)]
        top.frame(grid_y=grid)
        low.frame(grid_y=(0.5,))
        top.ylabels([0.0, *grid], ["0", *[sig3(g) for g in grid]])
        ax.text(14, top.y0 + top.height / 2, "MAE", rotation=90, ha="center", va="center",
                fontsize=8.5, color=TEXT)  # fmt: skip
        low.ylabels([0.0, 1.0], ["0%", "100%"])
        ax.text(14, low.y0 + low.height / 2, "labelled", rotation=90, ha="center", va="center",
                fontsize=8, color=TEXT)  # fmt: skip
        legend: list[tuple[str, dict[str, Any]]] = []
        if math.isfinite(baseline):
            top.line(xlim, [baseline] * 2, color="#3E8E41", lw=1.4)
            top.line(xlim, [alert] * 2, color=GAP_COLOR, lw=1.4, ls=(0, (6, 4)))
            legend += [
                (f"baseline (holdout) {sig3(baseline)}", {"color": "#3E8E41", "lw": 1.4}),
                (f"alert above {thresholds.performance_alert_ratio:g} x baseline = {sig3(alert)}",
                 {"color": GAP_COLOR, "lw": 1.4, "ls": (0, (6, 4))}),
            ]  # fmt: skip
        covered = [
            (d, b.metrics.mae, b.label_coverage_ratio >= result.min_label_coverage)
            for d, b in zip(days, batches, strict=True)
            if isinstance(b.metrics, RegressionMetrics)
        ]
        if covered:
            top.line([c[0] for c in covered], [c[1] for c in covered], color=BLUE, lw=1.3)
            for full in (True, False):
                pts = [c for c in covered if c[2] == full]
                if pts:
                    top.line([p[0] for p in pts], [p[1] for p in pts], ls="none", marker="o",
                             ms=5, color=BLUE, mfc=BLUE if full else "white", mew=1.3)  # fmt: skip
            legend.append((f"realized MAE per batch (hollow: under "
                           f"{percent(result.min_label_coverage)} labelled)",
                           {"color": BLUE, "lw": 1.3, "marker": "o", "ms": 5}))  # fmt: skip
        if isinstance(est_mae, float) and math.isfinite(est_mae):
            at = (result.batch_date - first).days
            if isinstance(est_low, float) and isinstance(est_high, float):
                top.line([at, at], [est_low, est_high], color="#8F3BB8", lw=5, alpha=0.35)
            top.line([at], [est_mae], ls="none", marker="D", ms=6, color="#8F3BB8")
            legend.append((f"estimated MAE of this batch {sig3(est_mae)}",
                           {"color": "#8F3BB8", "ls": "none", "marker": "D", "ms": 6}))  # fmt: skip
        for d, b in zip(days, batches, strict=True):
            share = b.label_coverage_ratio
            full = share >= result.min_label_coverage
            low.line([d, d], [0, share], color=BLUE if full else "#A9C4F5", lw=6.5)
        low.line(xlim, [result.min_label_coverage] * 2, color=MUTED, lw=0.8, ls=":")
        step = max(1, math.ceil((last_day + 1) / 10))
        ticks = list(range(0, last_day + 1, step))
        low.xlabels(ticks, [(first + timedelta(days=t)).strftime("%m-%d") for t in ticks])
        title = f"Performance window of {result.model} {result.model_version}, as of {result.as_of}"
        ax.text(12, height - 10, title, ha="left", va="top", fontsize=10, fontweight="bold",
                color=TEXT)  # fmt: skip
        x, y = 70.0, height - 42.0
        for label, style in legend:
            room = 34 + 5.2 * len(label)
            if x + room > width - 10:
                x, y = 70.0, y - 18
            line = {k: v for k, v in style.items() if k not in ("marker", "ms")}
            if line.get("ls") != "none":
                ax.plot([x, x + 18], [y, y], **line)
            if "marker" in style:
                ax.plot([x + 9], [y], ls="none", marker=style["marker"], ms=style["ms"],
                        color=style["color"])  # fmt: skip
            ax.text(x + 23, y, label, va="center", fontsize=7.5, color=TEXT)
            x += room + 16
        if not covered:
            ax.text(top.x0 + top.width / 2, top.y0 + top.height / 2,
                    "no batch of the window has labels yet", ha="center", va="center",
                    fontsize=9, color=MUTED)  # fmt: skip
        return svg_bytes(fig)

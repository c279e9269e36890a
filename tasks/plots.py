"""Pictures of a run: what drifted, how the performance moves, and the numbers people read.

One module for every picture driftline draws: the nightly report's (reference against current
for each pictured feature and the prediction; the performance window) and the Grafana dashboard
drawn from Prometheus (`scripts/draw_dashboard.py`), so they share colours, number formats and
the way a figure becomes PNG bytes.

Two halves:

- sketches (numpy only): what a picture needs of a sample, kept small while the drift step has
  the sorted batch in hand (`numeric_sketch`, `categorical_sketch`): 129 quantiles of each ECDF
  with the exact ECDF values there, and where the two ECDFs are furthest apart; the shares of
  the most common categories. A few kB a feature, whatever the batch size.
- drawing (matplotlib): imported inside the functions that draw, on the Agg backend through
  `matplotlib.figure.Figure` (never pyplot), so importing this module costs nothing at start-up.
  Figures are drawn one at a time (`_DRAWING`): matplotlib's text and font caches are shared.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.ecdf import Ecdf

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tasks.drift import FeatureDrift
    from tasks.results import MonitoringResult

# --- colours (Grafana's names, so the dashboard picture and the reports agree) -----------------

GREEN, ORANGE, RED, BLUE = "#73BF69", "#FF9830", "#F2495C", "#5794F2"
NAMED_COLORS = {
    "green": GREEN,
    "orange": ORANGE,
    "red": RED,
    "blue": BLUE,
    "yellow": "#FADE2A",
    "purple": "#B877D9",
    "dark-red": "#C4162A",
    "text": "#24292E",
    "transparent": "none",
}
# Grafana's "classic" palette, in its order
PALETTE = (
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
    "#447EBC",
    "#C15C17",
    "#890F02",
    "#0A437C",
    "#6D1F62",
    "#584477",
)
REFERENCE_COLOR = "#1F60C4"
CURRENT_COLOR = "#FF780A"
GAP_COLOR = "#D4001A"
TEXT = "#24292E"
MUTED = "#6E7781"
GRID = "#E4E7EB"


def named_color(name: str | None, default: str = TEXT) -> str:
    """A Grafana colour name (or a #hex) as a matplotlib colour."""
    if not name:
        return default
    return NAMED_COLORS.get(name, name)


# --- numbers for people ----------------------------------------------------------------------


def sig3(value: float | None) -> str:
    """3 significant digits, thousands grouped: 0.153, 2.5, 1,230, 3.2e-5; '-' when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        digits = 2 - math.floor(math.log10(magnitude))
        return f"{round(value, digits):,.0f}"
    if magnitude < 1e-3:
        return _exponent(value, 2)
    text = f"{value:.3g}"
    return _exponent(value, 2) if "e" in text else text


def _exponent(value: float, digits: int) -> str:
    """3.2e-5, not 3.2e-05."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def p_text(p: float | None) -> str:
    """A p-value as people read it: '< 1e-16', '3.2e-5', '0.0412', '1'."""
    if p is None or not math.isfinite(p):
        return "-"
    if p < 1e-16:
        return "< 1e-16"
    if p < 1e-3:
        return _exponent(p, 2)
    return f"{p:.3g}"


def percent(ratio: float | None) -> str:
    """0.834 -> '83%'; small shares keep a decimal: 0.004 -> '0.4%'."""
    if ratio is None or not math.isfinite(ratio):
        return "-"
    if ratio != 0 and abs(ratio) < 0.01:
        return f"{ratio * 100:.1f}%"
    return f"{ratio * 100:.0f}%"


def unit_text(value: float | None, unit: str | None = None, decimals: int | None = None) -> str:
    """A value in a Grafana unit ('none', 's', 'd', 'percentunit', 'sci'), as Grafana shows it."""
    if value is None or not math.isfinite(value):
        return "No data"
    if unit == "percentunit":
        return f"{value * 100:.{0 if decimals is None else decimals}f}%"
    if unit == "sci":
        return f"{value:.{2 if decimals is None else decimals}e}"
    if unit == "s":
        for size, name in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "min")):
            if abs(value) >= size:
                amount = value / size
                text = f"{amount:.{decimals}f}" if decimals is not None else sig3(amount)
                return f"{text} {name}"
        return f"{value:.{decimals}f} s" if decimals is not None else f"{sig3(value)} s"
    if unit == "d":
        days = f"{value:.{decimals}f}" if decimals is not None else sig3(value)
        return f"{days} day" + ("" if days == "1" else "s")
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    return sig3(value)


# --- sketches: what a picture needs of a sample ----------------------------------------------

SKETCH_POINTS = 129  # quantile levels 0, 1/128, ..., 1 of each ECDF
_REFINE_INTERVALS = 16  # at most this many stretches between knots are searched exactly


@dataclass(frozen=True)
class NumericSketch:
    """Two ECDFs at a few knots, exact there, and where they are furthest apart.

    `*_x` ascending knots (the quantiles of both samples and the largest gap's position),
    `*_f` the fraction of that sample at or below each knot. `gap_x` is where
    |F_reference - F_current| is largest (the KS distance, or its sample's when `sampled`),
    `gap_reference` and `gap_current` the two ECDFs there.
    """

    reference_x: np.ndarray
    reference_f: np.ndarray
    current_x: np.ndarray
    current_f: np.ndarray
    n_reference: int
    n_current: int
    gap_x: float = math.nan
    gap_reference: float = math.nan
    gap_current: float = math.nan
    sampled: int = 0  # > 0: the current ECDF is of an evenly spaced sample of this many values


@dataclass(frozen=True)
class CategoricalSketch:
    """Shares of the most common categories (of either sample) and of all the others."""

    categories: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    other_reference: float
    other_current: float
    n_other: int
    new: tuple[str, ...]  # shown categories the reference never had
    gone: tuple[str, ...]  # shown categories this batch does not have
    n_new: int  # over all categories, shown or not
    n_gone: int
    n_reference: int
    n_current: int


Sketch = NumericSketch | CategoricalSketch


def _cdf(ecdf: Ecdf, x: np.ndarray) -> np.ndarray:
    """The fraction of the sample at or below each x."""
    below = ecdf.below(np.searchsorted(ecdf.values, x, side="right"))
    return np.asarray(below, dtype=np.float64) / ecdf.n


def _quantiles(ecdf: Ecdf, levels: np.ndarray) -> np.ndarray:
    """Order statistics at `levels` (values of the sample, never interpolated)."""
    positions = np.round(levels * (ecdf.n - 1)).astype(np.int64)
    if ecdf.counts_below is None:
        return ecdf.values[positions]
    return ecdf.values[np.searchsorted(ecdf.counts_below, positions, side="right") - 1]


def _largest_gap(reference: Ecdf, current: Ecdf, knots: np.ndarray) -> tuple[float, float, float]:
    """Where the ECDFs are furthest apart: (x, F_reference(x), F_current(x)).

    The gap is evaluated at the knots (the quantiles of both samples, min and max included);
    between two knots neither ECDF rises by more than its rise from one knot to the next, which
    bounds the gap there. Stretches whose bound beats the best gap found are searched exactly,
    at every value of either sample inside them, largest bound first.
    """
    f_ref, f_cur = _cdf(reference, knots), _cdf(current, knots)
    gaps = np.abs(f_ref - f_cur)
    best = int(np.argmax(gaps))
    found = (float(knots[best]), float(f_ref[best]), float(f_cur[best]))
    best_gap = float(gaps[best])
    bounds = np.maximum(f_ref[1:] - f_cur[:-1], f_cur[1:] - f_ref[:-1])
    for j in np.argsort(-bounds, kind="stable")[:_REFINE_INTERVALS]:
        if bounds[j] <= best_gap:
            break
        # every value of either sample strictly between the two knots; each sample's ECDF at
        # its own values is read off its counts, at the other's by a search of that stretch
        low, high = knots[j], knots[j + 1]
        i0 = np.searchsorted(reference.values, low, side="right")
        i1 = np.searchsorted(reference.values, high, side="left")
        j0 = np.searchsorted(current.values, low, side="right")
        j1 = np.searchsorted(current.values, high, side="left")
        ref_v, cur_v = reference.values[i0:i1], current.values[j0:j1]
        if ref_v.size + cur_v.size == 0:
            continue
        points = np.concatenate([ref_v, cur_v])
        r = np.concatenate(
            [
                reference.below(np.arange(i0 + 1, i1 + 1)),
                reference.below(i0 + np.searchsorted(ref_v, cur_v, side="right")),
            ]
        ) / float(reference.n)
        c = np.concatenate(
            [
                current.below(j0 + np.searchsorted(cur_v, ref_v, side="right")),
                current.below(np.arange(j0 + 1, j1 + 1)),
            ]
        ) / float(current.n)
        i = int(np.argmax(np.abs(r - c)))
        if abs(r[i] - c[i]) > best_gap:
            best_gap = float(abs(r[i] - c[i]))
            found = (float(points[i]), float(r[i]), float(c[i]))
    return found


def numeric_sketch(reference: Ecdf, current: Ecdf, *, sampled: int = 0) -> NumericSketch:
    """The sketch of two ECDFs (either may be empty): O(SKETCH_POINTS log n)."""
    levels = np.linspace(0.0, 1.0, SKETCH_POINTS)
    empty = np.empty(0)
    ref_q = _quantiles(reference, levels) if reference.n else empty
    cur_q = _quantiles(current, levels) if current.n else empty
    gap = (math.nan, math.nan, math.nan)
    if reference.n and current.n:
        gap = _largest_gap(reference, current, np.unique(np.concatenate([ref_q, cur_q])))
    extra = np.array([gap[0]]) if math.isfinite(gap[0]) else empty

    def knots(own: np.ndarray, ecdf: Ecdf) -> tuple[np.ndarray, np.ndarray]:
        if not ecdf.n:
            return empty, empty
        x = np.unique(np.concatenate([own, extra]))
        return x, _cdf(ecdf, x)

    ref_x, ref_f = knots(ref_q, reference)
    cur_x, cur_f = knots(cur_q, current)
    return NumericSketch(ref_x, ref_f, cur_x, cur_f, reference.n, current.n, *gap, sampled=sampled)


def categorical_sketch(
    reference: Mapping[str, int], current: Mapping[str, int], *, shown: int = 8
) -> CategoricalSketch:
    """The `shown` categories with the largest share in either sample, and the rest summed."""
    n_ref = sum(n for n in reference.values() if n > 0)
    n_cur = sum(n for n in current.values() if n > 0)
    seen = sorted(
        {c for c, n in reference.items() if n > 0} | {c for c, n in current.items() if n > 0}
    )

    def share(counts: Mapping[str, int], n: int, category: str) -> float:
        return counts.get(category, 0) / n if n else 0.0

    weight = {c: max(share(reference, n_ref, c), share(current, n_cur, c)) for c in seen}
    top = sorted(seen, key=lambda c: (-weight[c], c))[:shown]
    ref_shares = tuple(share(reference, n_ref, c) for c in top)
    cur_shares = tuple(share(current, n_cur, c) for c in top)
    new = [c for c in seen if reference.get(c, 0) <= 0]
    gone = [c for c in seen if current.get(c, 0) <= 0]
    return CategoricalSketch(
        categories=tuple(top),
        reference_shares=ref_shares,
        current_shares=cur_shares,
        other_reference=max(0.0, 1.0 - sum(ref_shares)) if n_ref else 0.0,
        other_current=max(0.0, 1.0 - sum(cur_shares)) if n_cur else 0.0,
        n_other=len(seen) - len(top),
        new=tuple(c for c in top if c in set(new)) if n_ref else (),
        gone=tuple(c for c in top if c in set(gone)) if n_cur else (),
        n_new=len(new) if n_ref else 0,
        n_gone=len(gone) if n_cur else 0,
        n_reference=n_ref,
        n_current=n_cur,
    )


# --- figures -----------------------------------------------------------------------------------

_DRAWING = threading.Lock()


def figure(width_px: float, height_px: float, dpi: int = 100) -> Figure:
    """A white Agg figure of this size in pixels (matplotlib imported here, not at start-up)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, without a timestamp: the same picture gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def canvas(fig: Figure) -> Axes:
    """One axes over the whole figure in pixel coordinates (0, 0 bottom left), nothing drawn."""
    width, height = fig.get_size_inches() * fig.dpi
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    return ax


class Box:
    """A plot area on a `canvas`: data coordinates mapped onto a rectangle of pixels.

    Drawing many small plots on one axes this way costs a fraction of one axes each (no tick
    machinery), which keeps the nightly report's pictures within their time budget.
    """

    def __init__(
        self,
        ax: Axes,
        rect: tuple[float, float, float, float],
        xlim: tuple[float, float],
        ylim: tuple[float, float],
    ) -> None:
        self.ax = ax
        self.x0, self.y0, self.width, self.height = rect
        self.xlim, self.ylim = xlim, ylim

    def px(self, x: Any) -> Any:
        low, high = self.xlim
        return self.x0 + (np.asarray(x, dtype=np.float64) - low) / (high - low) * self.width

    def py(self, y: Any) -> Any:
        low, high = self.ylim
        return self.y0 + (np.asarray(y, dtype=np.float64) - low) / (high - low) * self.height

    def clip_x(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, *self.xlim)

    def line(self, x: Any, y: Any, **style: Any) -> None:
        self.ax.plot(self.px(x), self.py(y), solid_capstyle="butt", **style)

    def frame(self, *, grid_y: Sequence[float] = ()) -> None:
        from matplotlib.patches import Rectangle

        for y in grid_y:
            self.ax.plot(
                [self.x0, self.x0 + self.width], [self.py(y)] * 2, color=GRID, lw=0.8, zorder=0
            )
        self.ax.add_patch(
            Rectangle((self.x0, self.y0), self.width, self.height, fill=False, ec="#C9CED4", lw=0.8)
        )

    def xlabels(self, values: Sequence[float], labels: Sequence[str], **style: Any) -> None:
        for value, label in zip(values, labels, strict=True):
            self.ax.text(
                float(self.px(value)), self.y0 - 4, label, ha="center", va="top",
                fontsize=7.5, color=MUTED, **style,
            )  # fmt: skip

    def ylabels(self, values: Sequence[float], labels: Sequence[str]) -> None:
        for value, label in zip(values, labels, strict=True):
            self.ax.text(
                self.x0 - 4, float(self.py(value)), label, ha="right", va="center",
                fontsize=7.5, color=MUTED,
            )  # fmt: skip


def _nice_limits(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high <= low:
        pad = abs(low) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.04
    return low - pad, high + pad


# --- the nightly report's pictures -------------------------------------------------------------

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
        xlim = _nice_limits([float(low), float(high)])
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
    """Reference against current for each (feature, sketch), three to a row, as PNG bytes."""
    rows = max(1, math.ceil(len(items) / COLUMNS))
    columns = min(COLUMNS, max(1, len(items)))
    legend_h = 26
    with _DRAWING:
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
        return png_bytes(fig)


def performance_picture(result: MonitoringResult) -> bytes | None:
    """Realized MAE per batch of the window with its label coverage, the estimate when the
    result has one, the baseline and the 1.2 x baseline alert line; None with no batch."""
    batches = result.performance
    if not batches:
        return None
    first = batches[0].batch_date
    days = [(b.batch_date - first).days for b in batches]
    last_day = max(days[-1], (result.batch_date - first).days)
    baseline = result.baseline.mae
    estimate = getattr(result, "estimate", None)
    est_mae = getattr(estimate, "mae", None)
    est_low = getattr(estimate, "mae_lower", None)
    est_high = getattr(estimate, "mae_upper", None)
    maes = [b.metrics.mae for b in batches if b.metrics is not None]
    levels = [*maes, baseline * 1.25, baseline * 0.8]
    levels += [v for v in (est_mae, est_low, est_high) if isinstance(v, float)]
    ylim = (0.0, max(v for v in levels if math.isfinite(v)) * 1.08) if maes or baseline else (0, 1)
    width, height = 990, 320
    with _DRAWING:
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
            top.line(xlim, [1.2 * baseline] * 2, color=GAP_COLOR, lw=1.4, ls=(0, (6, 4)))
            legend += [
                (f"baseline (holdout) {sig3(baseline)}", {"color": "#3E8E41", "lw": 1.4}),
                (f"alert above 1.2 x baseline = {sig3(1.2 * baseline)}",
                 {"color": GAP_COLOR, "lw": 1.4, "ls": (0, (6, 4))}),
            ]  # fmt: skip
        covered = [
            (d, b.metrics.mae, b.label_coverage_ratio >= result.min_label_coverage)
            for d, b in zip(days, batches, strict=True)
            if b.metrics is not None
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
        return png_bytes(fig)


def drawn_or_none(function: Callable[[], bytes | None]) -> bytes | None:
    """Run a drawing; a picture that cannot be drawn is left out, never fails the caller."""
    try:
        return function()
    except Exception:  # a picture is never worth a failed run
        import logging

        logging.getLogger("driftline.plots").warning("a picture could not be drawn", exc_info=True)
        return None

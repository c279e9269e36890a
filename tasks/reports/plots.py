"""Pictures of a run: what drifted, how the performance moves, and the numbers people read.

One module for every picture driftline draws: the nightly report's (reference against current
for each pictured feature and the prediction; the performance window) and the Grafana dashboard
drawn from Prometheus (`scripts/draw_dashboard.py`), so they share colours, number formats and
the way a figure becomes PNG bytes.

What a picture needs of a sample is kept by the drift step in `tasks/stats/sketches.py`, and numbers
are written for people by `tasks/reports/numbers.py`. Drawing uses matplotlib, imported inside the
functions that draw, on the Agg backend through `matplotlib.figure.Figure` (never pyplot), so
importing this module costs nothing at start-up. Figures are drawn one at a time (`DRAWING`):
matplotlib's text and font caches are shared.
"""

from __future__ import annotations

import io
import math
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# --- colours (Grafana's names, so the dashboard picture and the reports agree) -----------------

GREEN, ORANGE, RED, BLUE = "#73BF69", "#FF9830", "#F2495C", "#5794F2"
REFERENCE_COLOR = "#1F60C4"
CURRENT_COLOR = "#FF780A"
GAP_COLOR = "#D4001A"
TEXT = "#24292E"
MUTED = "#6E7781"
GRID = "#E4E7EB"


# --- figures -----------------------------------------------------------------------------------

DRAWING = threading.Lock()


def _import_figure() -> None:
    """Import `matplotlib.figure` without the 3-D toolkit.

    `matplotlib.projections` imports `mpl_toolkits.mplot3d` only to register the '3d'
    projection, which no driftline picture uses; it is a fifth of the import. The toolkit stays
    importable: it is only kept out while the figure module loads, and matplotlib's warning
    about it is expected here.
    """
    if "matplotlib.figure" in sys.modules:
        return
    blocked = "mpl_toolkits.mplot3d" not in sys.modules
    if blocked:
        sys.modules["mpl_toolkits.mplot3d"] = None  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unable to import Axes3D")
            import matplotlib.figure  # noqa: F401
    finally:
        if blocked:
            del sys.modules["mpl_toolkits.mplot3d"]


def figure(width_px: float, height_px: float, dpi: int = 100) -> Figure:
    """A white Agg figure of this size in pixels (matplotlib imported here, not at start-up)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    _import_figure()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def svg_bytes(fig: Figure) -> bytes:
    """The figure as SVG bytes: text kept as text (the viewer's sans-serif draws it, about half
    the drawing time of PNG), fixed ids and no date, so the same picture gives the same bytes."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "driftline"}):
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


def nice_limits(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high <= low:
        pad = abs(low) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.04
    return low - pad, high + pad


def drawn_or_none(function: Callable[[], bytes | None]) -> bytes | None:
    """Run a drawing; a picture that cannot be drawn is left out, never fails the caller."""
    try:
        return function()
    except Exception:  # a picture is never worth a failed run
        import logging

        logging.getLogger("driftline.plots").warning("a picture could not be drawn", exc_info=True)
        return None

"""Grafana's colours, units and the PNG, as the dashboard picture uses them."""

from __future__ import annotations

import io
import math
from typing import Any

from tasks.reports.numbers import sig3
from tasks.reports.plots import BLUE, GREEN, ORANGE, RED, TEXT

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


def named_color(name: str | None, default: str = TEXT) -> str:
    """A Grafana colour name (or a #hex) as a matplotlib colour."""
    if not name:
        return default
    return NAMED_COLORS.get(name, name)


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


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes, without a timestamp: the same picture gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()

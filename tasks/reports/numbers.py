"""Numbers as people read them: 3 significant digits, p-values, shares, Grafana's units."""

from __future__ import annotations

import math


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


def round_sig(value: float, digits: int = 3) -> float:
    """`value` rounded to `digits` significant digits, still a number: for table artifacts."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def percent(ratio: float | None) -> str:
    """0.834 -> '83%'; small shares keep a decimal: 0.004 -> '0.4%'."""
    if ratio is None or not math.isfinite(ratio):
        return "-"
    if ratio != 0 and abs(ratio) < 0.01:
        return f"{ratio * 100:.1f}%"
    return f"{ratio * 100:.0f}%"

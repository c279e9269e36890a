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
by the --out suffix. `snapshot()` and `empty_panels()` let tests check that no panel is empty.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tasks.reports import plots
from tasks.reports.numbers import sig3
from tasks.reports.plots import BLUE, GREEN, MUTED, ORANGE, RED, TEXT

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "driftline-model-monitoring.json"
OUTPUT = REPO_ROOT / "docs" / "dashboard.png"

# --- Grafana's colours, units and the PNG (only this script draws them) ------------------

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


COLUMN_PX = 68  # Grafana's grid is 24 columns wide
ROW_PX = 34  # one grid unit tall
HEADER_PX = 92
MARGIN_PX = 10
MIN_STEP_SECONDS = 15  # the datasource's timeInterval (the scrape interval)
NICE_STEPS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points a series
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
DURATION = re.compile(r"^(\d+)([smhdwy])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
BUILTIN = {"__interval", "__interval_ms", "__range", "__range_s", "__rate_interval"}


def seconds_of(duration: str) -> int:
    """'30d' -> 2592000; 'now-30d' -> the same."""
    match = DURATION.match(duration.removeprefix("now-"))
    if not match:
        raise ValueError(f"not a duration: {duration!r} (expected e.g. 30d, 12h, 90m)")
    return int(match.group(1)) * SECONDS[match.group(2)]


def duration_text(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= SECONDS[unit] and seconds % SECONDS[unit] == 0:
            return f"{int(seconds // SECONDS[unit])}{unit}"
    return f"{int(seconds)}s"


# --- Prometheus ----------------------------------------------------------------------------------


class Prometheus:
    """The few read calls of Prometheus' HTTP API that the dashboard needs."""

    def __init__(self, url: str, timeout_seconds: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout_seconds

    def _get(self, path: str, params: dict[str, str] | Sequence[tuple[str, str]]) -> Any:
        full = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(full, timeout=self.timeout) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{full}: {body.get('error', body)}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(
            "/api/v1/query", {"query": expr, "time": f"{at:.3f}"}
        )["result"]
        return result

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        params = [("match[]", match), ("start", f"{start:.0f}"), ("end", f"{end:.0f}")]
        values: list[str] = self._get(f"/api/v1/label/{label}/values", params)
        return values

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts", {})["alerts"]
        return alerts


# --- what each panel shows ------------------------------------------------------------------------


@dataclass
class Series:
    ref: str
    name: str
    labels: dict[str, str]
    times: np.ndarray  # unix seconds
    values: np.ndarray  # float, NaN where absent

    @property
    def last(self) -> float:
        present = self.values[np.isfinite(self.values)]
        return float(present[-1]) if present.size else math.nan

    @property
    def max(self) -> float:
        present = self.values[np.isfinite(self.values)]
        return float(present.max()) if present.size else math.nan


@dataclass
class PanelData:
    panel: dict[str, Any]
    queries: list[str] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # tables
    rows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    step: float = 0.0

    @property
    def title(self) -> str:
        return str(self.panel["title"])

    def empty_targets(self) -> list[str]:
        """The targets (or the alert list) that returned nothing to show."""
        kind = self.panel["type"]
        if kind == "alertlist":
            return [] if self.alerts else ["no alert matches the panel's filter"]
        if kind == "table":
            return [] if self.rows else self.queries
        shown = {s.ref for s in self.series if np.isfinite(s.values).any()}
        targets = self.panel.get("targets", [])
        return [q for t, q in zip(targets, self.queries, strict=True) if t["refId"] not in shown]


@dataclass
class Annotation:
    name: str
    title: str
    text: str
    color: str
    start: float
    end: float


@dataclass
class Snapshot:
    dashboard: dict[str, Any]
    prometheus_url: str
    variables: dict[str, str]
    shown: dict[str, str]  # the variables as Grafana's pickers show them
    start: float
    end: float
    panels: list[PanelData]
    annotations: list[Annotation]


def substitute(text: str, values: dict[str, str]) -> str:
    """Expand $var, ${var} and [[var]] the way Grafana does for a single value."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values.get(name, match.group(0))

    return VARIABLE.sub(value, text)


def grafana_step(range_seconds: float, width_px: float) -> int:
    """Grafana's interval: the range over the panel's width in pixels, to a round step."""
    raw = max(range_seconds / max(width_px, 1.0), range_seconds / MAX_POINTS, MIN_STEP_SECONDS)
    return next((s for s in NICE_STEPS if s >= raw), math.ceil(raw / 86400) * 86400)


def legend_name(series_labels: dict[str, str], legend: str | None) -> str:
    if legend and legend != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series_labels.get(m.group(1), ""), legend)
    name = series_labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(series_labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or "value"


def _as_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def _variables(
    dashboard: dict[str, Any],
    prom: Prometheus,
    start: float,
    end: float,
    chosen: dict[str, str | None],
) -> tuple[dict[str, str], dict[str, str]]:
    """Each template variable's value (chosen, or as Grafana would pick it) and its label."""
    values: dict[str, str] = {}
    shown: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        pick = chosen.get(name)
        if pick is None and variable.get("includeAll"):
            current = variable.get("current", {}).get("value")
            if current in (["$__all"], "$__all"):
                values[name], shown[name] = variable.get("allValue") or ".*", "All"
                continue
        if pick is None:
            query = substitute(variable["query"], values)
            match = re.match(r"label_values\((.*),\s*(\w+)\)\s*$", query)
            if not match:
                raise ValueError(f"variable {name}: cannot resolve {query!r}")
            found = sorted(prom.label_values(match.group(2), match.group(1), start, end))
            if not found:
                raise RuntimeError(f"variable ${name}: {query} has no value in Prometheus")
            pick = found[0]
        values[name] = pick
        shown[name] = "All" if pick == variable.get("allValue") else pick
    return values, shown


def _matrix(ref: str, legend: str | None, result: Iterable[dict[str, Any]]) -> list[Series]:
    out = []
    for item in result:
        points = item.get("values") or ([item["value"]] if "value" in item else [])
        times = np.array([float(t) for t, _ in points])
        values = np.array([_as_float(v) for _, v in points])
        out.append(Series(ref, legend_name(item["metric"], legend), item["metric"], times, values))
    return out


def _table(panel: dict[str, Any], frames: list[tuple[str, list[dict[str, Any]]]]) -> PanelData:
    """Instant vectors as table rows, then the panel's transformations (merge, organize,
    sortBy) as Grafana applies them."""
    rows: list[dict[str, Any]] = []
    for ref, result in frames:
        for item in result:
            labels = {k: v for k, v in item["metric"].items()}
            value = {f"Value #{ref}": _as_float(item["value"][1]), "Time": item["value"][0]}
            if any(t["id"] == "merge" for t in panel.get("transformations", [])):
                # Grafana's merge: rows whose other (non-number) fields all agree become one
                for row in rows:
                    if {k: v for k, v in row.items() if isinstance(v, str)} == labels:
                        row.update(value)
                        break
                else:
                    rows.append(labels | value)
            else:
                rows.append(labels | value)
    columns = sorted({k for row in rows for k in row})
    for transformation in panel.get("transformations", []):
        options = transformation.get("options", {})
        if transformation["id"] == "organize":
            excluded = {k for k, v in options.get("excludeByName", {}).items() if v}
            order = options.get("indexByName", {})
            columns = sorted(
                (c for c in columns if c not in excluded), key=lambda c: (order.get(c, 99), c)
            )
            renames = options.get("renameByName", {})
            rows = [{renames.get(k, k): v for k, v in row.items()} for row in rows]
            columns = [renames.get(c, c) for c in columns]
        elif transformation["id"] == "sortBy":
            for sort in reversed(options.get("sort", [])):
                key = sort["field"]
                rows.sort(
                    key=lambda r, key=key: (r.get(key) is None, r.get(key, 0)),
                    reverse=bool(sort.get("desc")),
                )
    return PanelData(panel, columns=columns, rows=rows)


def _label_filter(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', text)


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        have = labels.get(name, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


def _alert_list(panel: dict[str, Any], prom: Prometheus, values: dict[str, str]) -> PanelData:
    options = panel.get("options", {})
    matchers = _label_filter(substitute(options.get("alertInstanceLabelFilter", ""), values))
    states = {k for k, on in options.get("stateFilter", {}).items() if on}
    alerts = [
        a for a in prom.alerts() if a.get("state") in states and _matches(a["labels"], matchers)
    ]
    severity = {"critical": 0, "warning": 1}
    alerts.sort(
        key=lambda a: (
            a["state"] != "firing",
            severity.get(a["labels"].get("severity", ""), 2),
            a["labels"].get("alertname", ""),
            a["labels"].get("feature", ""),
        )
    )
    return PanelData(panel, alerts=alerts[: int(options.get("maxItems", 20))])


def _annotations(
    dashboard: dict[str, Any], prom: Prometheus, values: dict[str, str], start: float, end: float
) -> list[Annotation]:
    found: list[Annotation] = []
    for spec in dashboard.get("annotations", {}).get("list", []):
        if not spec.get("enable", True) or not spec.get("expr"):
            continue
        step = max(seconds_of(spec.get("step", "60s")), (end - start) / MAX_POINTS)
        result = prom.range(substitute(spec["expr"], values), start, end, step)
        for item in result:
            labels = item["metric"]
            times = [float(t) for t, v in item["values"] if _as_float(v) != 0]
            runs: list[list[float]] = []
            for t in times:
                if runs and t - runs[-1][1] <= step * 1.5:
                    runs[-1][1] = t
                else:
                    runs.append([t, t])
            for first, last in runs:
                found.append(
                    Annotation(
                        name=spec["name"],
                        title=legend_name(labels, spec.get("titleFormat")),
                        text=legend_name(labels, spec.get("textFormat")),
                        color=named_color(spec.get("iconColor"), plots.BLUE),
                        start=first,
                        end=last,
                    )
                )
    return sorted(found, key=lambda a: (a.start, a.name, a.title))


def snapshot(
    dashboard: dict[str, Any],
    prometheus_url: str,
    *,
    model: str | None = None,
    feature: str | None = None,
    range_seconds: float | None = None,
    end: float | None = None,
) -> Snapshot:
    """Run every panel's queries (and the annotations') as Grafana would for these choices."""
    prom = Prometheus(prometheus_url)
    end = time.time() if end is None else end
    span = range_seconds or seconds_of(dashboard["time"]["from"])
    start = end - span
    values, shown = _variables(dashboard, prom, start, end, {"model": model, "feature": feature})
    panels = []
    for panel in dashboard["panels"]:
        width = panel["gridPos"]["w"] * COLUMN_PX
        step = grafana_step(span, width)
        builtins = {
            "__range": duration_text(span),
            "__range_s": str(int(span)),
            "__interval": duration_text(step),
            "__interval_ms": str(step * 1000),
            "__rate_interval": duration_text(max(step + MIN_STEP_SECONDS, 4 * MIN_STEP_SECONDS)),
        }
        expand = {**values, **builtins}
        if panel["type"] == "alertlist":
            panels.append(_alert_list(panel, prom, values))
            continue
        queries = [substitute(t["expr"], expand) for t in panel.get("targets", [])]
        if panel["type"] == "table":
            frames = [
                (t["refId"], prom.instant(q, end))
                for t, q in zip(panel["targets"], queries, strict=True)
            ]
            data = _table(panel, frames)
        else:
            data = PanelData(panel, step=step)
            for target, query in zip(panel["targets"], queries, strict=True):
                result = prom.range(query, start, end, step)
                data.series += _matrix(target["refId"], target.get("legendFormat"), result)
        data.queries = queries
        panels.append(data)
    annotations = _annotations(dashboard, prom, values, start, end)
    return Snapshot(dashboard, prometheus_url, values, shown, start, end, panels, annotations)


def empty_panels(snap: Snapshot) -> list[str]:
    """'title: what returned nothing' for every panel that would show no data."""
    return [f"{p.title}: {'; '.join(p.empty_targets())}" for p in snap.panels if p.empty_targets()]


# --- field config as Grafana applies it -----------------------------------------------------------


def field_config(panel: dict[str, Any], ref: str | None, name: str | None = None) -> dict[str, Any]:
    """The defaults with the overrides that match this frame (refId) or field (name)."""
    config = dict(panel.get("fieldConfig", {}).get("defaults", {}))
    config["custom"] = dict(config.get("custom", {}))
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override["matcher"]
        hit = (matcher["id"] == "byFrameRefID" and matcher["options"] == ref) or (
            matcher["id"] == "byName" and matcher["options"] == name
        )
        if not hit:
            continue
        for prop in override["properties"]:
            key = prop["id"]
            if key.startswith("custom."):
                config["custom"][key.removeprefix("custom.")] = prop["value"]
            else:
                config[key] = prop["value"]
    return config


def threshold_color(config: dict[str, Any], value: float) -> str:
    steps = config.get("thresholds", {}).get("steps", [])
    color = steps[0]["color"] if steps else "green"
    for step in steps:
        if step["value"] is None or (math.isfinite(value) and value >= step["value"]):
            color = step["color"]
    return named_color(color)


def value_color(config: dict[str, Any], value: float) -> str:
    mode = config.get("color", {})
    if mode.get("mode") == "fixed":
        return named_color(mode.get("fixedColor"))
    return threshold_color(config, value)


def mapped(config: dict[str, Any], value: float) -> tuple[str, str] | None:
    """A value mapping's (text, colour) for this value, when one matches."""
    for mapping in config.get("mappings", []):
        if mapping.get("type") != "value" or not math.isfinite(value):
            continue
        for key, result in mapping.get("options", {}).items():
            if float(key) == value:
                return str(result.get("text", key)), named_color(result.get("color"))
    return None


# --- drawing -------------------------------------------------------------------------------------


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


def _timeseries(
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
        for when_s, text, color in _annotation_groups(snap.annotations):
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


def _annotation_groups(notes: Sequence[Annotation]) -> list[tuple[float, str, str]]:
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
            text, color, fill = _cell(value, config)
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


def _cell(value: Any, config: dict[str, Any]) -> tuple[str, str, str | None]:
    """(text, text colour, the cell's threshold or mapping colour)."""
    if isinstance(value, float):
        hit = mapped(config, value)
        if hit:
            return hit[0], TEXT, hit[1]
        text = unit_text(value, config.get("unit"), config.get("decimals"))
        return text, TEXT, threshold_color(config, value) if "thresholds" in config else None
    return ("" if value is None else str(value)), TEXT, None


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
    for start, text, color in _annotation_groups(snap.annotations):
        when = datetime.fromtimestamp(start, UTC).strftime("%m-%d %H:%M")
        label = f"▲ {text} ({when})"
        ax.text(x, height - 76, label, ha="left", va="center", fontsize=8, color=color)
        x += 24 + 6.0 * len(label)
        if x > width - 200:
            break
    first_series = True
    for data in snap.panels:
        rect = _panel_rect(data.panel, height)
        _frame(ax, rect, data.title)
        kind = data.panel["type"]
        if kind == "stat":
            _stat(ax, data, rect)
        elif kind == "timeseries":
            _timeseries(fig, ax, data, rect, snap, label_annotations=first_series)
            first_series = False
        elif kind == "table":
            _table_panel(ax, data, rect)
        elif kind == "alertlist":
            _alert_panel(ax, data, rect)
    return fig


def save(fig: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(plots.svg_bytes(fig) if out.suffix == ".svg" else png_bytes(fig))


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

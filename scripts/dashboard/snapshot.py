"""What each panel of the dashboard would show: its queries, variables substituted, run against
a live Prometheus with Grafana's step for the panel's width."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.dashboard.grafana import named_color
from tasks.reports import plots

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
                rows.sort(key=_sort_key(sort["field"]), reverse=bool(sort.get("desc")))
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
        if panel["type"] == "row":  # a row's header; a collapsed row's panels are not drawn
            panels.append(PanelData(panel))
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


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """Grafana's sortBy: rows without the field last."""
    return lambda row: (row.get(key) is None, row.get(key, 0))

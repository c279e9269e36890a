"""Field config as Grafana applies it: defaults, overrides, thresholds and value mappings."""

from __future__ import annotations

import math
from typing import Any

from scripts.dashboard.grafana import named_color, unit_text
from tasks.reports.plots import TEXT


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


def cell_text(value: Any, config: dict[str, Any]) -> tuple[str, str, str | None]:
    """(text, text colour, the cell's threshold or mapping colour)."""
    if isinstance(value, float):
        hit = mapped(config, value)
        if hit:
            return hit[0], TEXT, hit[1]
        text = unit_text(value, config.get("unit"), config.get("decimals"))
        return text, TEXT, threshold_color(config, value) if "thresholds" in config else None
    return ("" if value is None else str(value)), TEXT, None

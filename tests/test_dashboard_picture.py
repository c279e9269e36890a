"""The dashboard drawn as Grafana would show it, from the live Prometheus the pipeline fed.

scripts/draw_dashboard.py runs each panel's own queries (variables substituted, the dashboard's
range and Grafana's step); every panel must show data, and the picture must come out whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.stack_fixtures import MonitoredStack, prom_query, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads(
    (REPO_ROOT / "infra" / "grafana" / "dashboards" / "driftline-model-monitoring.json").read_text()
)


def renderer() -> ModuleType:
    from scripts.dashboard import snapshot

    return snapshot


def command() -> ModuleType:
    from scripts import draw_dashboard

    return draw_dashboard


def test_steps_and_variables_follow_grafana() -> None:
    draw = renderer()
    # 30 days over a 16-column panel (~1,000 px): one point an hour, as Grafana would round it
    assert draw.grafana_step(30 * 86400, 16 * draw.COLUMN_PX) == 3600
    assert draw.grafana_step(900, 1000) == 15  # never below the scrape interval
    assert draw.substitute(
        'x{model="$model",f=~"${feature}"}', {"model": "m", "feature": ".*"}
    ) == ('x{model="m",f=~".*"}')
    assert draw.seconds_of("now-30d") == 30 * 86400


@pytest.mark.prefect
@pytest.mark.e2e
def test_every_panel_of_the_drawn_dashboard_shows_data(
    monitored_stack: MonitoredStack, tmp_path: Path
) -> None:
    url = monitored_stack.live.prometheus_url
    model = monitored_stack.model
    # the alert list shows firing alerts once the rules' `for:` has passed
    wait_for(
        lambda: prom_query(url, f'ALERTS{{alertstate="firing",model="{model}"}}'),
        timeout_seconds=60,
        what="a firing alert for the Firing alerts panel",
    )
    draw = renderer()
    snap = draw.snapshot(DASHBOARD, url, model=None, range_seconds=None)
    assert snap.variables["model"] == model  # the $model picker's first value
    assert snap.shown["feature"] == "All"
    assert [p.title for p in snap.panels] == [p["title"] for p in DASHBOARD["panels"]]
    empty = draw.empty_panels(snap)
    assert not empty, "panels that would show no data:\n" + "\n".join(empty)
    assert {a.name for a in snap.annotations} == {"Production version", "Alerts firing"}
    out = tmp_path / "dashboard.png"
    assert command().main(["--prometheus", url, "--out", str(out), "--model", model]) == 0
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in DASHBOARD["panels"])
    assert width == 24 * draw.COLUMN_PX + 2 * draw.MARGIN_PX
    # the dashboard's grid rows under the header (the PNG rounds up by a pixel or two)
    assert 0 <= height - (draw.HEADER_PX + rows * draw.ROW_PX + draw.MARGIN_PX) <= 2

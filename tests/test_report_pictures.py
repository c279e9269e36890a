"""The day's report: pictures of what drifted, in the Prefect artifact and as HTML in the lake."""

from __future__ import annotations

import base64
import math
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from core.settings import AlertThresholds, DriftRule, load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.registry import Registry
from tasks.day.engine import assemble, monitor_and_write, run_day
from tasks.day.inputs import ModelContext, load_model_context, read_window
from tasks.edge.validation import ValidatedBatch
from tasks.performance.window import PerformanceOutcome
from tasks.reports import day as reports
from tasks.reports import numbers
from tasks.results.day import MonitoringResult
from tasks.stats import sketches
from tasks.stats.batch_drift import DriftOutcome, drift_report
from tasks.stats.ecdf import ecdf_of
from tasks.stats.profile import ReferenceProfile, build_profile
from tests.builders import batch, card

HTML_LIMIT = 500_000
ARTIFACT_LIMIT = 1_000_000  # Prefect 1's server capped artifacts at 1 MB; stay under it


def test_numbers_are_rounded_for_people() -> None:
    assert [numbers.sig3(v) for v in (0.15349, 2.0, 1234.5, 0.0000321, -0.5, math.nan)] == [
        "0.153",
        "2",
        "1,230",
        "3.2e-5",
        "-0.5",
        "-",
    ]
    assert [numbers.p_text(p) for p in (0.0, 1e-17, 3.21e-5, 0.04123, 1.0)] == [
        "< 1e-16",
        "< 1e-16",
        "3.2e-5",
        "0.0412",
        "1",
    ]


@pytest.mark.parametrize("seed", range(6))
def test_the_drawn_gap_is_the_ks_distance_where_it_is_largest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.normal(0, 1, 5000)
    current = rng.normal(0.2 * seed, 1 + 0.1 * seed, 3000)
    if seed % 2:  # ties: rounded values
        reference, current = np.round(reference, 1), np.round(current, 1)
    sketch = sketches.numeric_sketch(ecdf_of(reference)[0], ecdf_of(current)[0])
    d = stats.ks_2samp(reference, current).statistic
    assert abs(sketch.gap_reference - sketch.gap_current) == pytest.approx(d, abs=1e-12)
    assert np.mean(reference <= sketch.gap_x) == pytest.approx(sketch.gap_reference)
    assert np.mean(current <= sketch.gap_x) == pytest.approx(sketch.gap_current)
    assert sketch.reference_x.size <= sketches.SKETCH_POINTS + 1  # small, whatever the sample


EDGE_CARD = card(numeric=("carat", "empty", "single"), categorical=("cut", "many"))


def edge_world() -> tuple[ReferenceProfile, pa.Table]:
    """A profile with the awkward features: all missing in the batch, one value, 1,000
    categories, a category the reference never had; and the batch that shows them."""

    def frame(rows: int, seed: int, current: bool) -> pa.Table:
        rng = np.random.default_rng(seed)
        t = batch(rows, seed=seed, shift=0.5 if current else 0.0, target="price")
        empty = np.full(rows, np.nan) if current else rng.normal(size=rows)
        many = np.array([f"category-{i:04d}" for i in rng.integers(0, 1000, rows)], dtype=object)
        cut = np.array(t.column("cut").to_pylist(), dtype=object)
        if current:
            cut[: rows // 4] = "never-seen-before"
        return (
            t.append_column("empty", pa.array(empty))
            .append_column("single", pa.array(np.full(rows, 3.0)))
            .append_column("many", pa.array(many))
            .set_column(t.schema.get_field_index("cut"), "cut", pa.array(cut))
        )

    return build_profile(frame(4000, 99, False), EDGE_CARD), frame(3000, 1, True)


def edge_result(
    profile: ReferenceProfile,
    current: pa.Table,
    outcome: DriftOutcome,
    warnings: tuple[str, ...] = (),
) -> MonitoringResult:
    """The edge world's day, assembled as the engine does, with no batch in the window."""
    return assemble(
        ModelContext(EDGE_CARD, profile),
        date(2026, 3, 2),
        ValidatedBatch(current, warnings),
        outcome,
        PerformanceOutcome((), 0, ()),
    )


def test_awkward_features_all_render() -> None:
    profile, current = edge_world()
    outcome = drift_report(profile, current, DriftRule())
    sketches = outcome.sketches
    assert sketches["empty"].n_current == 0
    assert sketches["single"].gap_reference == sketches["single"].gap_current == 1.0
    assert sketches["cut"].new == ("never-seen-before",) and sketches["cut"].n_new == 1
    assert len(sketches["many"].categories) == 8 and sketches["many"].n_other > 900
    result = edge_result(profile, current, outcome)
    report = reports.DayReport.draw(result, sketches, DriftRule())
    # five features is more than "few": the drifted ones, topped up to three by score
    assert set(report.pictured) >= {"carat", "cut", "many"} and "prediction" in report.pictured
    assert report.drift_svg is not None and b"<svg" in report.drift_svg[:500]
    assert report.performance_svg is None  # no batch in the window
    page = report.html()
    assert len(page.encode()) < HTML_LIMIT
    assert "too little data" in page  # the feature with every value missing
    assert "never-seen-before" not in page or "&lt;" not in page  # escaped if ever shown


def test_hostile_names_are_escaped_in_both_renderings() -> None:
    profile, current = edge_world()
    outcome = drift_report(profile, current, DriftRule())
    result = edge_result(profile, current, outcome, ("a <script>|warning",))
    report = reports.DayReport.draw(result, outcome.sketches, DriftRule())
    assert "<script>" not in report.html()
    assert "<script>" not in report.markdown("/lake/x|y/report.html")
    markdown = report.markdown("/lake/x|y/report.html")
    assert "(file:///lake/x%7Cy/report.html)" in markdown  # a link that stays one link
    assert "- warning: a &lt;script&gt;|warning" in markdown  # escaped, in its bullet


START = date(2026, 6, 1)
DAYS = 5
DRIFT_START = START + timedelta(days=3)
SIZE = ["carat", "x", "y", "z"]  # in the card's order


@pytest.mark.slow  # five simulated days monitored and drawn
def test_the_demo_data_drift_days_picture_exactly_the_drifted_features(
    tmp_path: Path, diamonds_registry: Path
) -> None:
    shutil.copytree(diamonds_registry, tmp_path / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(tmp_path / "lake"), "MODEL_REGISTRY_URI": str(tmp_path / "registry")}
    )
    commands.simulate(settings, model="diamonds-price", start=START, days=DAYS, rows_per_day=1500,
                      scenario="data-drift", seed=11, drift_start=DRIFT_START)  # fmt: skip
    context = load_model_context(Registry.open(settings.model_registry_uri), "diamonds-price")
    lake = Lake.open(settings.data_lake_uri)
    end = START + timedelta(days=DAYS - 1)
    window = read_window(lake, context.card, START, end, window_days=30)
    for i in range(DAYS):
        day = START + timedelta(days=i)
        outcome = monitor_and_write(lake, context, day, settings, window=window)
        assert outcome.result is not None
        page = Path(lake.report_path("diamonds-price", day)).read_text()
        assert len(page.encode()) < HTML_LIMIT
        assert page.count("data:image/svg+xml;base64,") == 2, day  # drift and performance
        drifted = outcome.result.drifted_features
        caption = re.search(r'alt="Reference against this batch: ([^"]*)"', page)
        assert caption is not None, day
        # the picture itself: one titled cell per pictured feature (its text kept as text)
        drift_svg = base64.b64decode(page.split("data:image/svg+xml;base64,")[1].split('"')[0])
        titles = re.findall(rb"font-weight: 700; font-size: 10px[^>]*>([^<]*)</text>", drift_svg)
        if day >= DRIFT_START:
            assert [t.decode() for t in titles] == [*SIZE, "prediction"], day
            assert drifted == SIZE, day
            assert f"Drifted: {', '.join(SIZE)} (4 of 9 features tested)." in page
            assert caption.group(1) == f"{', '.join(SIZE)} and the prediction"
        else:
            assert drifted == [], day
            assert "No feature drifted (9 tested)." in page
    # the Prefect artifact of the last day: the same pictures inline, and the link to the page
    day = run_day(lake, context, end, settings)
    report = reports.DayReport.draw(day.result, day.sketches, settings.drift_rule)
    uri = lake.uri_of(lake.report_path("diamonds-price", end))
    markdown = report.markdown(uri)
    assert len(markdown.encode()) < ARTIFACT_LIMIT
    assert markdown.count("](data:image/svg+xml;base64,") == 2
    assert f"(file://{uri})" in markdown
    assert markdown.index("data:image/svg+xml") < markdown.index("| feature | test |")
    # the alert line and the facts quote the thresholds the report is given
    assert b"alert above 1.2 x baseline" in (report.performance_svg or b"")
    stricter = reports.DayReport.draw(
        day.result, day.sketches, settings.drift_rule, AlertThresholds(performance_alert_ratio=1.5)
    )
    assert b"alert above 1.5 x baseline" in (stricter.performance_svg or b"")
    assert "(alert above 1.5 x)" in stricter.markdown()


def test_the_drift_table_artifact_shows_numbers_rounded_for_people() -> None:
    profile, current = edge_world()
    outcome = drift_report(profile, current, DriftRule())
    result = edge_result(profile, current, outcome)
    rows = [row for row in reports.drift_rows(result) if row["status"] == "ok"]
    assert rows
    for row in rows:
        for key in ("p_value", "p_value_adjusted"):
            p = row[key]
            assert p == 0 or float(f"{p:.3g}") == p, (row["feature"], key, p)
        for key in ("score", "missing_ratio"):
            assert round(row[key], 4) == row[key], (row["feature"], key)
    exact = {d.feature: d.p_value for d in result.features}
    assert any(exact[row["feature"]] != row["p_value"] for row in rows)  # result.json keeps these

"""History export: the live gauges, stamped at the nightly schedule, as OpenMetrics and blocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from core.errors import RunError
from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.registry import Registry
from tasks.day import engine as monitoring
from tasks.day import inputs
from tasks.export import history
from tasks.export.catalogue import RunStamp, metric_families
from tests import procs
from tests.procs import wait_for

START = date(2024, 2, 27)


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path
) -> list[history.PastRun]:
    settings = load_settings(
        {
            "DATA_LAKE_URI": str(tmp_path_factory.mktemp("lake")),
            "MODEL_REGISTRY_URI": str(diamonds_registry),
        }
    )
    commands.simulate(
        settings, model="diamonds-price", start=START, days=4, rows_per_day=100,
        scenario="none", seed=2,
    )  # fmt: skip
    lake = Lake.open(settings.data_lake_uri)
    context = inputs.load_model_context(
        Registry.open(settings.model_registry_uri), "diamonds-price"
    )
    return [
        history.PastRun(
            monitoring.run_day(lake, context, START + timedelta(days=i), settings).result, 0.5 + i
        )
        for i in range(4)
    ]


def test_day_d_is_stamped_when_its_nightly_run_is_scheduled_d_plus_one_at_two_utc() -> None:
    # across a leap day and a month end
    assert (
        history.scheduled_run_seconds(date(2024, 2, 28))
        == datetime(2024, 2, 29, 2, tzinfo=UTC).timestamp()
    )
    assert (
        history.scheduled_run_seconds(date(2024, 2, 29))
        == datetime(2024, 3, 1, 2, tzinfo=UTC).timestamp()
    )


def test_history_has_each_family_once_with_the_live_label_sets_sorted_by_time(
    runs: list[history.PastRun],
) -> None:
    families = history.history_families(reversed(runs))  # order of arrival does not matter
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    live = {
        (s.name, tuple(sorted(s.labels.items())))
        for f in metric_families(runs[-1].result, RunStamp(0, 0))
        for s in f.samples
    }
    for family in families:
        series: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for sample in family.samples:
            labels = dict(sample.labels)
            assert (labels.pop("job"), labels.pop("model")) == ("ml_monitoring", "diamonds-price")
            assert "instance" not in labels
            series.setdefault(tuple(sorted(labels.items())), []).append(sample.timestamp)
            assert (sample.name, tuple(sorted(labels.items()))) in live
        for stamps in series.values():
            assert (
                stamps
                == sorted(stamps)
                == [history.scheduled_run_seconds(START + timedelta(days=i)) for i in range(4)]
            )


def test_run_success_and_duration_in_history_are_the_schedule_and_the_measured_duration(
    runs: list[history.PastRun],
) -> None:
    families = {f.name: f for f in history.history_families(runs)}
    success = families["ml_monitoring_last_success_timestamp_seconds"].samples
    assert [s.value for s in success] == [s.timestamp for s in success]
    duration = families["ml_monitoring_run_duration_seconds"].samples
    assert [s.value for s in duration] == [0.5, 1.5, 2.5, 3.5]


def test_openmetrics_text_is_prometheus_clients_exposition_and_parses_back(
    runs: list[history.PastRun],
) -> None:
    text = history.openmetrics_text(history.history_families(runs)).decode()
    assert text.endswith("# EOF\n")
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    rows = parsed["ml_batch_rows"].samples
    assert [(s.value, float(s.timestamp)) for s in rows] == [
        (100.0, history.scheduled_run_seconds(START + timedelta(days=i))) for i in range(4)
    ]


def history_blocks(runs: list[history.PastRun], tmp_path: Path) -> tuple[Path, list[str]]:
    """Write the runs' history as OpenMetrics and turn it into blocks in a fresh data dir."""
    source = tmp_path / "history.om.txt"
    source.write_bytes(history.openmetrics_text(history.history_families(runs)))
    data = tmp_path / "data"
    return data, history.create_blocks(source, data)


def test_promtool_turns_the_history_into_blocks_moved_whole_into_the_data_dir(
    runs: list[history.PastRun], tmp_path: Path
) -> None:
    data, blocks = history_blocks(runs, tmp_path)
    assert blocks and sorted(p.name for p in data.iterdir()) == blocks  # no staging left
    assert all((data / b / "meta.json").is_file() for b in blocks)


def test_without_promtool_the_error_says_how_to_go_on(
    runs: list[history.PastRun], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RunError, match=r"promtool not found on PATH.*--openmetrics FILE"):
        history.create_blocks(tmp_path / "x", tmp_path / "data")


def test_an_unreachable_prometheus_leaves_earlier_samples_and_says_so() -> None:
    said = history.clear_days("http://127.0.0.1:9", "diamonds-price", [START])
    assert "not reachable" in said and "docs/backfill.md" in said


@pytest.mark.e2e
def test_rerunning_days_prometheus_holds_without_its_admin_api_stops_with_the_fix(
    runs: list[history.PastRun], tmp_path: Path
) -> None:
    data, _ = history_blocks(runs, tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    days = [START + timedelta(days=i) for i in range(4)]
    with procs.prometheus(config, data, "--storage.tsdb.retention.time=100y") as prometheus:
        url = prometheus.url
        wait_for(lambda: history.days_held(url, "diamonds-price", days), timeout_seconds=60,
                 what="Prometheus to serve the blocks", tolerating=(OSError,))  # fmt: skip
        assert history.days_held(url, "diamonds-price", days) == days
        with pytest.raises(RunError, match=r"admin API is disabled.*delete_series"):
            history.clear_days(url, "diamonds-price", days[1:3])
        assert "no earlier samples" in history.clear_days(
            url, "diamonds-price", [START + timedelta(days=30)]
        )

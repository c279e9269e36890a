"""Backfill replays the nightly run: the same result for every day, from inputs read once."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from core.errors import InputError, RunError
from core.settings import Settings, load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.registry import Registry
from tasks.day.backfill import days_between, replay, write_replayed
from tasks.day.engine import run_day
from tasks.day.inputs import ModelContext, load_model_context, read_window
from tasks.results.day import from_json, to_json

# forty simulated days, replayed and monitored again: ~15 s on 2 cores
pytestmark = pytest.mark.slow

START = date(2024, 3, 1)
DAYS = 40
MISSING = START + timedelta(days=20)


def simulated_lake(root: Path, registry: Path, *, rows: int = 300) -> Settings:
    settings = load_settings(
        {"DATA_LAKE_URI": str(root), "MODEL_REGISTRY_URI": str(registry)},
    )
    commands.simulate(
        settings,
        model="diamonds-price",
        start=START,
        days=DAYS,
        rows_per_day=rows,
        scenario="both",
        seed=3,
    )
    return settings


@pytest.fixture(scope="module")
def untidy_lake(
    tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path
) -> tuple[Settings, ModelContext]:
    """Forty simulated days with what real lakes hold: a missing batch, rows labelled twice,
    labels for rows nobody scored, null labels."""
    settings = simulated_lake(tmp_path_factory.mktemp("lake"), diamonds_registry)
    lake = Lake.open(settings.data_lake_uri)
    shutil.rmtree(lake.scored_dir("diamonds-price", MISSING))
    day10 = START + timedelta(days=10)
    ids = lake.read_scored("diamonds-price", day10, columns=["row_id"]).column("row_id")
    relabel = pa.table({"row_id": ids[:50], "price": pa.array([1000.0] * 50)})
    lake.write_table(
        f"{lake.labels_dir('diamonds-price', day10 + timedelta(days=9))}/x.parquet", relabel
    )
    stray = pa.table({"row_id": ["nobody-1", "nobody-2"], "price": [1.0, 2.0]})
    lake.write_table(
        f"{lake.labels_dir('diamonds-price', START + timedelta(days=25))}/y.parquet", stray
    )
    nulls = pa.table({"row_id": ids[50:60], "price": pa.array([None] * 10, pa.float64())})
    lake.write_table(
        f"{lake.labels_dir('diamonds-price', day10 + timedelta(days=12))}/z.parquet", nulls
    )
    context = load_model_context(Registry.open(settings.model_registry_uri), "diamonds-price")
    return settings, context


@pytest.mark.prefect
def test_a_backfilled_day_is_the_bytes_the_nightly_flow_wrote(
    untidy_lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.backfill import backfill
    from flows.monitor import monitor

    settings, _ = untidy_lake
    nightly, replayed = tmp_path / "nightly", tmp_path / "replayed"
    for lake_dir in (nightly, replayed):
        shutil.copytree(
            settings.data_lake_uri, lake_dir, ignore=shutil.ignore_patterns("monitoring")
        )
    monkeypatch.setenv("MODEL_REGISTRY_URI", settings.model_registry_uri)
    # relabelled rows, the day before the missing batch, stray labels, null labels, a late day
    days = [START + timedelta(days=n) for n in (10, 19, 25, 28, 39)]
    monkeypatch.setenv("DATA_LAKE_URI", str(nightly))
    for day in days:
        monitor(model="diamonds-price", batch_date=day, push=False)
    monkeypatch.setenv("DATA_LAKE_URI", str(replayed))
    report = backfill(start=days[0], end=days[-1], model="diamonds-price")
    assert set(days) <= set(report.succeeded) and [d for d, _ in report.failed] == [MISSING]
    by_flow, by_backfill = Lake.open(str(nightly)), Lake.open(str(replayed))
    for day in days:
        for path in (by_flow.result_path, by_flow.report_path):
            written = by_flow.read_bytes(path("diamonds-price", day))
            assert written is not None, (day, path)
            relative = Path(path("diamonds-price", day)).relative_to(nightly)
            assert by_backfill.read_bytes(str(replayed / relative)) == written, (day, relative)


def test_a_range_window_gives_every_day_the_result_of_its_own_window(untidy_lake) -> None:
    settings, context = untidy_lake
    lake = Lake.open(settings.data_lake_uri)
    start, end = START + timedelta(days=3), START + timedelta(days=DAYS - 1)
    inputs = read_window(lake, context.card, start, end, window_days=30)
    compared = 0
    for day in days_between(start, end):
        if day == MISSING:
            continue
        nightly = run_day(lake, context, day, settings).result
        assert to_json(run_day(lake, context, day, settings, window=inputs).result) == to_json(
            nightly
        ), day
        compared += 1
    assert compared == DAYS - 4


def test_a_day_without_a_batch_fails_with_the_nightly_message(untidy_lake) -> None:
    settings, context = untidy_lake
    lake = Lake.open(settings.data_lake_uri)
    inputs = read_window(lake, context.card, MISSING, MISSING, window_days=30)
    with pytest.raises(
        RunError, match=f"no scored batch for model=diamonds-price batch_date={MISSING}"
    ):
        run_day(lake, context, MISSING, settings, window=inputs)


def test_a_replayed_day_is_written_where_the_nightly_run_writes_it(untidy_lake, tmp_path) -> None:
    settings, context = untidy_lake
    lake = Lake.open(settings.data_lake_uri)
    day = START + timedelta(days=30)
    inputs = read_window(lake, context.card, day, day, window_days=30)
    (outcome,) = write_replayed(lake, [replay(lake, context, inputs, day, settings)], settings)
    written = lake.read_bytes(lake.result_path("diamonds-price", day))
    assert written is not None and from_json(written) == outcome.result
    assert outcome.duration_seconds > 0


def test_a_batch_repeating_an_earlier_row_id_fails_only_its_own_night(
    tmp_path: Path, diamonds_registry: Path
) -> None:
    settings = simulated_lake(tmp_path / "lake", diamonds_registry, rows=50)
    lake = Lake.open(settings.data_lake_uri)
    day = START + timedelta(days=30)
    batch = lake.read_scored("diamonds-price", day).to_pandas()
    batch.loc[0, "row_id"] = f"{(day - timedelta(days=2)).isoformat()}-0000007"
    lake.replace_partition(
        lake.scored_dir("diamonds-price", day),
        "part-0.parquet",
        pa.Table.from_pandas(batch, preserve_index=False),
    )
    context = load_model_context(Registry.open(settings.model_registry_uri), "diamonds-price")
    inputs = read_window(lake, context.card, day, day + timedelta(days=2), window_days=30)
    earlier = (day - timedelta(days=2)).isoformat()
    with pytest.raises(InputError, match=f"batch {day}: row_id '{earlier}-0000007' was already "
                       f"scored in batch {earlier}"):  # fmt: skip
        run_day(lake, context, day, settings, window=inputs)
    later = run_day(lake, context, day + timedelta(days=2), settings, window=inputs).result
    assert day not in [b.batch_date for b in later.performance]
    assert [w for w in later.warnings if str(day) in w] == [
        f"batch {day} is left out of the performance window: {inputs.scored_errors[day]}"
    ]


def test_a_range_ending_before_it_starts_is_refused_with_the_fix() -> None:
    with pytest.raises(InputError, match="--end 2024-01-01 is before --start 2024-01-05"):
        days_between(date(2024, 1, 5), date(2024, 1, 1))


def test_a_bad_label_file_fails_the_night_that_reads_it_first_only(untidy_lake, tmp_path) -> None:
    settings, context = untidy_lake
    copy = tmp_path / "lake"
    shutil.copytree(settings.data_lake_uri, copy)
    lake = Lake.open(str(copy))
    arrival = START + timedelta(days=33)
    bad = pa.Table.from_pandas(pd.DataFrame({"row_id": ["a"], "cost": [1.0]}))
    lake.write_table(f"{lake.labels_dir('diamonds-price', arrival)}/bad.parquet", bad)
    inputs = read_window(lake, context.card, arrival - timedelta(days=2), arrival, window_days=30)
    copied = load_settings(
        {"DATA_LAKE_URI": str(copy), "MODEL_REGISTRY_URI": settings.model_registry_uri}
    )
    assert (
        run_day(lake, context, arrival - timedelta(days=2), copied, window=inputs).result.n_rows
        == 300
    )
    with pytest.raises(InputError, match=r"bad\.parquet lacks column 'price'"):
        run_day(lake, context, arrival - timedelta(days=1), copied, window=inputs)
    after = run_day(lake, context, arrival, copied, window=inputs).result
    (said,) = [w for w in after.warnings if "bad.parquet" in w]
    assert said.startswith(f"labels of {arrival} are left out of the performance window: ")

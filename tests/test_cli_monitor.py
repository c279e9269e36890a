"""`driftline monitor` on good, untidy and bad input, through the command line's own entry.

The CLI runs in-process (one Prefect start-up for the module), against a private lake and a
recording Pushgateway, so each case checks the exit status, the one-line message, what was
written to the lake and what was pushed.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.cli import main
from tests.conftest import simulated_world
from tests.pushgateway_recorder import only_failure, recording_pushgateway, serving

DAY = date(2026, 3, 5)
START = date(2026, 3, 1)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    return simulated_world(tmp_path_factory.mktemp("simulated"), diamonds_registry, start=START,
                           days=6, rows_per_day=300, seed=3)  # fmt: skip


@pytest.fixture
def world(simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    with recording_pushgateway() as gateway:
        monkeypatch.setenv("DATA_LAKE_URI", str(tmp_path / "lake"))
        monkeypatch.setenv("MODEL_REGISTRY_URI", str(tmp_path / "registry"))
        monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
        monkeypatch.setenv("DRIFTLINE_PUSH_RETRY_DELAYS", "0")
        yield tmp_path, gateway


def batch_file(root: Path, day: date = DAY) -> Path:
    return (
        root / "lake" / "scored" / "model=diamonds-price" / f"batch_date={day}" / "part-0.parquet"
    )


def result_file(root: Path, day: date = DAY) -> Path:
    return (
        root / "lake" / "monitoring" / "model=diamonds-price" / f"batch_date={day}" / "result.json"
    )


def rewrite(path: Path, change) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def set_column(name: str, values) -> callable:
    def change(table: pa.Table) -> pa.Table:
        array = values(table) if callable(values) else values
        return table.set_column(table.column_names.index(name), name, array)

    return change


def monitor(capsys: pytest.CaptureFixture[str], day: date = DAY) -> tuple[int, str]:
    code = main(["monitor", "--date", day.isoformat()])
    return code, capsys.readouterr().err


def monitor_refuses(world, capsys: pytest.CaptureFixture[str], *, version: str = "v1") -> str:
    """Monitor DAY expecting bad input: exit 2, no result in the lake, only the failure pushed
    (added to the group, the last good night's gauges kept); return stderr."""
    root, gateway = world
    code, err = monitor(capsys)
    assert code == 2, err
    assert not result_file(root).exists()
    labels = only_failure(gateway)
    assert labels == {"model": "diamonds-price", "model_version": version, "reason": "input"}
    return err


@pytest.mark.prefect
def test_a_clean_day_writes_its_result_and_pushes_it(world, capsys):
    root, gateway = world
    code, err = monitor(capsys)
    assert code == 0, err
    assert result_file(root).is_file()
    ((method, path, body),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/ml_monitoring/model/diamonds-price")
    assert b'ml_feature_drift_detected{feature="carat",model_version="v1"} 0.0' in body


@pytest.mark.prefect
def test_the_run_is_named_by_model_and_date_and_publishes_its_artifacts(world, capsys):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    assert monitor(capsys)[0] == 0
    with get_client(sync_client=True) as client:
        latest = {
            a.key: a
            for a in client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["drift-diamonds-price", "summary-diamonds-price"])
                )
            )
        }
        run = client.read_flow_run(latest["drift-diamonds-price"].flow_run_id)
    assert run.name == "monitor-diamonds-price-2026-03-05"
    assert run.parameters["batch_date"] == "2026-03-05"
    table = latest["drift-diamonds-price"]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["feature"] for r in rows][:3] == ["carat", "cut", "color"]
    assert {"score", "p_value", "p_value_adjusted", "drifted"} <= set(rows[0])
    summary = latest["summary-diamonds-price"]
    assert summary.type == "markdown"
    assert summary.data.startswith("# diamonds-price v1: batch 2026-03-05")


@pytest.mark.prefect
def test_a_rerun_rewrites_the_same_result(world, capsys):
    root, _ = world
    assert monitor(capsys)[0] == 0
    first = result_file(root).read_bytes()
    report = result_file(root).with_name("report.html")
    first_report = report.read_bytes()
    assert monitor(capsys)[0] == 0
    assert result_file(root).read_bytes() == first
    assert report.read_bytes() == first_report  # the pictures too: no timestamps in them
    assert sorted(p.name for p in result_file(root).parent.iterdir()) == [
        "report.html",
        "result.json",
    ]


BAD_INPUT = {
    "missing feature column": (
        lambda t: t.drop_columns(["carat"]),
        "lacks column 'carat' (expected row_id, carat, cut",
    ),
    "wrong dtype": (
        set_column("depth", lambda t: pa.compute.cast(t.column("depth"), pa.string())),
        "column 'depth' has type string, expected a numeric type",
    ),
    "inf in a feature": (
        set_column("x", lambda t: pa.array(np.where(np.arange(t.num_rows) == 4, np.inf, 1.0))),
        "column 'x' has 1 infinite value(s) (first at row_id '2026-03-05-0000004')",
    ),
    "inf in the prediction": (
        set_column("prediction", lambda t: pa.array(np.full(t.num_rows, -np.inf))),
        "column 'prediction' has 300 infinite value(s)",
    ),
    "duplicate row_id": (
        set_column("row_id", lambda t: pa.array(["2026-03-05-0000001"] * t.num_rows)),
        "column 'row_id' has duplicates (e.g. '2026-03-05-0000001')",
    ),
}


@pytest.mark.prefect
@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_batches_exit_2_naming_the_problem_and_push_only_the_failure(world, capsys, case):
    root, _ = world
    change, expected = BAD_INPUT[case]
    rewrite(batch_file(root), change)
    err = monitor_refuses(world, capsys)
    assert err.count("\n") == 1 and err.startswith("driftline: error: batch 2026-03-05")
    assert expected in err


def unreadable_batch(root: Path) -> list[str]:
    batch_file(root).write_bytes(b"PAR1 this is not parquet")
    return [f"{batch_file(root)}: not a readable Parquet file"]


def label_file_without_the_target(root: Path) -> list[str]:
    labels = root / "lake" / "labels" / "model=diamonds-price" / "arrival_date=2026-03-06"
    bad = labels / "batch-2026-03-05.parquet"
    rewrite(bad, lambda t: t.rename_columns(["row_id", "cost"]))
    return [f"{bad} lacks column 'price' (expected row_id, price; found row_id, cost)"]


def tampered_reference_profile(root: Path) -> list[str]:
    profile = root / "registry" / "diamonds-price" / "v1" / "profile.arrow"
    profile.write_bytes(profile.read_bytes() + b"\0")
    return [f"{profile}: sha256", "does not match its card"]


# each damages one input file and returns what the error must say about it
DAMAGED_FILES = {
    "an unreadable parquet file": unreadable_batch,
    "a label file without the target column": label_file_without_the_target,
    "a tampered reference profile": tampered_reference_profile,
}


@pytest.mark.prefect
@pytest.mark.parametrize("case", DAMAGED_FILES)
def test_a_damaged_input_file_is_named_and_only_the_failure_is_pushed(world, capsys, case):
    root, _ = world
    expected = DAMAGED_FILES[case](root)
    # a version whose files do not match its card is refused before its version is known
    version = "unknown" if case == "a tampered reference profile" else "v1"
    err = monitor_refuses(world, capsys, version=version)
    for said in expected:
        assert said in err


def test_a_tampered_model_file_stops_simulate_before_unpickling(trained_env, capsys, monkeypatch):
    for key, value in trained_env.items():  # a registry only: simulate needs no lake
        monkeypatch.setenv(key, value)
    registry = Path(trained_env["MODEL_REGISTRY_URI"])
    model_file = registry / "diamonds-price" / "v1" / "model.joblib"
    model_file.write_bytes(b"not the registered model")
    code = main(["simulate", "--start", "2026-04-01", "--days", "1"])
    assert code == 2
    assert "model.joblib: sha256" in capsys.readouterr().err


@pytest.mark.prefect
def test_untidy_data_is_monitored_with_warnings(world, capsys):
    root, gateway = world
    rewrite(batch_file(root), lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)))
    rewrite(batch_file(root), set_column(
        "carat", lambda t: pa.array(np.where(np.arange(t.num_rows) < 30, np.nan, 1.0))
    ))  # fmt: skip
    labels = root / "lake" / "labels" / "model=diamonds-price" / "arrival_date=2026-03-06"
    pq.write_table(pa.table({"row_id": ["ghost-1", "ghost-2"], "price": [1.0, 2.0]}),
                   labels / "stray.parquet")  # fmt: skip
    code, err = monitor(capsys)
    assert code == 0, err
    result = json.loads(result_file(root).read_text())
    carat = next(f for f in result["features"] if f["feature"] == "carat")
    assert carat["missing_ratio"] == pytest.approx(0.1) and carat["n_current"] == 270
    assert result["unmatched_labels"] == 2
    assert any("ignoring extra column(s) note" in w for w in result["warnings"])
    assert len(gateway.requests) == 1


@pytest.mark.prefect
def test_an_empty_batch_pushes_zero_rows_and_no_drift(world, capsys):
    root, gateway = world
    rewrite(batch_file(root), lambda t: t.slice(0, 0))
    code, err = monitor(capsys)
    assert code == 0, err
    body = gateway.requests[0][2]
    assert b'ml_batch_rows{model_version="v1"} 0.0' in body
    assert b"ml_feature_drift" not in body and b"ml_prediction_drift" not in body


@pytest.mark.prefect
def test_a_missing_batch_fails_the_run_naming_the_partition(world, capsys):
    _, gateway = world
    code, err = monitor(capsys, date(2026, 4, 1))
    assert code == 1
    assert "no scored batch for model=diamonds-price batch_date=2026-04-01" in err
    assert "batch_date=2026-04-01" in err
    assert only_failure(gateway) == {
        "model": "diamonds-price",
        "model_version": "v1",
        "reason": "error",
    }


@pytest.mark.prefect
def test_a_model_the_registry_does_not_know_fails_and_starts_no_group(world, capsys):
    """A mistyped name exits 2 naming the registry's models, and pushes nothing: a failure
    pushed for it would start a group, and an alert, for a model that is not."""
    _, gateway = world
    code = main(["monitor", "--model", "gem-gone", "--date", DAY.isoformat()])
    assert code == 2
    assert "model 'gem-gone' has no version or alias 'production'" in capsys.readouterr().err
    assert gateway.requests == []


@pytest.mark.prefect
def test_no_push_pushes_no_failure_either(world, capsys):
    root, gateway = world
    rewrite(batch_file(root), lambda t: t.drop_columns(["carat"]))
    assert main(["monitor", "--date", DAY.isoformat(), "--no-push"]) == 2
    assert gateway.requests == []


@pytest.mark.prefect
def test_an_unreachable_pushgateway_leaves_a_failed_nights_own_error(world, capsys, monkeypatch):
    root, _ = world
    rewrite(batch_file(root), lambda t: t.drop_columns(["carat"]))
    monkeypatch.setenv("PUSHGATEWAY_URL", "http://127.0.0.1:9")
    code = main(["monitor", "--date", DAY.isoformat()])  # the warning: tests/test_failure_push.py
    captured = capsys.readouterr()
    assert code == 2
    assert (
        captured.err.startswith("driftline: error: batch 2026-03-05") and "'carat'" in captured.err
    )


@pytest.mark.prefect
def test_a_refused_push_adds_no_failure_that_would_hide_the_pushgateways_own(
    world, capsys, monkeypatch
):
    from http.server import BaseHTTPRequestHandler

    methods: list[str] = []

    class Refusing(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            methods.append(self.command)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = _refuse

        def log_message(self, *args: object) -> None:
            pass

    with serving(Refusing) as url:
        monkeypatch.setenv("PUSHGATEWAY_URL", url)
        code, err = monitor(capsys)
    assert code == 1 and "could not push to the Pushgateway" in err
    assert methods == ["PUT", "PUT"]  # push_failure_time_seconds says it (MLMonitoringPushFailing)


@pytest.mark.prefect
def test_pushgateway_down_fails_the_run_but_keeps_the_results_and_the_next_run_pushes(
    world, capsys, monkeypatch
):
    root, gateway = world
    monkeypatch.setenv("PUSHGATEWAY_URL", "http://127.0.0.1:9")
    code, err = monitor(capsys)
    assert code == 1
    assert "could not push to the Pushgateway at http://127.0.0.1:9 after 2 attempts" in err
    assert result_file(root).is_file()
    monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
    next_day = date(2026, 3, 6)
    assert monitor(capsys, next_day)[0] == 0
    ((_, _, body),) = gateway.requests
    assert b"ml_batch_timestamp_seconds" in body and b"1.7727552e+09" in body


def test_bad_usage_exits_2_with_one_line(capsys):
    assert main(["monitor", "--date", "2026-13-01"]) == 2
    err = capsys.readouterr().err
    assert "'2026-13-01' is not a date (expected YYYY-MM-DD)" in err

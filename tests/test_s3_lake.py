"""The lake and the registry on S3, for real: moto's S3 server on loopback (tests/s3.py), both
DATA_LAKE_URI and MODEL_REGISTRY_URI as pyarrow's own S3 URIs, credentials from the AWS variables
of the test process only.

The bar: a model and table the project never saw (the household energy model of
tests/test_second_model.py), registered, simulated and monitored with both URIs on S3, gives the
same results and metrics, byte for byte, as the same commands on local disk; reruns change
nothing; bad input, a missing batch, a tampered model file and a run killed mid-write behave on S3
as they do on disk.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path

import joblib
import pytest

from core.errors import InputError
from core.settings import load_settings
from data_lake.lake import Lake
from driftline.cli import main
from model_registry.registry import MODEL_FILE, Registry
from tasks.day import inputs
from tests import procs
from tests.pushgateway_recorder import failure_labels, recording_pushgateway
from tests.s3 import (
    FAKE_AWS_ENV,
    REPO,
    S3Bucket,
    S3Server,
    nightly,
    s3_fixture,  # noqa: F401  (the fixture s3)
    s3_server_fixture,  # noqa: F401  (the fixture s3_server)
)
from tests.test_second_model import write_energy_model

pytestmark = pytest.mark.e2e

MODEL = "house-energy"
START = date(2026, 5, 1)
DAYS = 4
LAST = START + timedelta(days=DAYS - 1)
# differ by nature between two runs: a measured duration and the wall-clock time of the run
RUN_TIME_METRICS = ("ml_monitoring_run_duration_seconds", "ml_monitoring_last_success_timestamp")


@pytest.fixture(scope="session", name="energy_files")
def energy_files_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """energy.joblib and energy-reference.parquet, as a team outside driftline hands them over."""
    directory = tmp_path_factory.mktemp("energy-files")
    write_energy_model(directory)
    return directory


def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """The command line in this process, with `env` set for the call; (exit, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def register_and_simulate(
    env: Mapping[str, str], files: Path, *, days: int = DAYS, rows_per_day: int = 600
) -> None:
    """`driftline register` of the energy model and `driftline simulate` of `days` days."""
    code, _, err = run_cli(
        env, "register", "--model", MODEL, "--artifact", str(files / "energy.joblib"),
        "--reference", str(files / "energy-reference.parquet"), "--target", "kwh_per_month",
        "--categorical", "region,has_heat_pump",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        env, "simulate", "--model", MODEL, "--start", START.isoformat(), "--days", str(days),
        "--rows-per-day", str(rows_per_day), "--scenario", "data-drift", "--seed", "5",
    )  # fmt: skip
    assert code == 0, err


def s3_env(s3: S3Bucket, **extra: str) -> dict[str, str]:
    return {
        "DATA_LAKE_URI": s3.uri("lake"),
        "MODEL_REGISTRY_URI": s3.uri("registry"),
        "PUSHGATEWAY_URL": "http://127.0.0.1:9",
        "PROMETHEUS_URL": "http://127.0.0.1:9",
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
        **extra,
    }


def energy_world(
    s3: S3Bucket, files: Path, *, days: int = DAYS, rows_per_day: int = 600
) -> dict[str, str]:
    """The energy model registered and `days` days simulated with both roots in `s3`."""
    env = s3_env(s3)
    register_and_simulate(env, files, days=days, rows_per_day=rows_per_day)
    return env


def result_key(day: date) -> str:
    return f"lake/monitoring/model={MODEL}/batch_date={day}/result.json"


def local_result(root: Path, day: date) -> bytes:
    return (root / "lake" / result_key(day).removeprefix("lake/")).read_bytes()


def without_run_times(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if not line.startswith(RUN_TIME_METRICS)]


# --- the bar: the same commands on S3 and on local disk ------------------------------------------


@pytest.fixture(scope="module")
def worlds(
    request: pytest.FixtureRequest,
    s3_server: S3Server,
    energy_files: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[S3Bucket, dict[str, str], Path, dict[str, str]]]:
    """The energy model registered and four days simulated, once on S3 and once on disk."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in FAKE_AWS_ENV.items():
            patch.setenv(key, value)
        bucket = s3_server.bucket()
        on_s3 = energy_world(bucket, energy_files)
        root = tmp_path_factory.mktemp("on-disk")
        on_disk = {**on_s3, "DATA_LAKE_URI": str(root / "lake"),
                   "MODEL_REGISTRY_URI": str(root / "registry")}  # fmt: skip
        register_and_simulate(on_disk, energy_files)
        yield bucket, on_s3, root, on_disk


def test_registered_and_simulated_on_s3_as_on_disk(worlds) -> None:
    bucket, _, root, _ = worlds
    registry = sorted(k for k in bucket.keys("registry/"))
    assert registry == [
        f"registry/{MODEL}/aliases.json",
        *(f"registry/{MODEL}/v1/{name}" for name in sorted(
            ["card.json", "loss_estimator.joblib", "model.joblib", "profile.arrow",
             "reference.parquet"])),
    ]  # fmt: skip
    s3_card = json.loads(bucket.read(f"registry/{MODEL}/v1/card.json"))
    disk_card = json.loads((root / "registry" / MODEL / "v1" / "card.json").read_text())
    for card in (s3_card, disk_card):
        card.pop("created_at")
    assert s3_card == disk_card, "the same files, hashes, features and holdout metrics"
    inputs = [k for k in bucket.keys("lake/") if k.endswith(".parquet")]
    assert len(inputs) > DAYS
    for key in inputs:
        assert bucket.read(key) == (root / key).read_bytes(), key


@pytest.mark.prefect
def test_the_nightly_run_on_s3_writes_and_pushes_what_it_does_on_disk_and_reruns_are_identical(
    worlds,
) -> None:
    bucket, on_s3, root, on_disk = worlds
    pushed = {}
    for name, env in (("s3", on_s3), ("disk", on_disk)):
        with recording_pushgateway() as gateway:
            code, out, err = run_cli(
                {**env, "PUSHGATEWAY_URL": gateway.url},
                *("monitor", "--model", MODEL, "--date", LAST.isoformat()),
            )
            assert code == 0, err
            assert out.startswith(f"{MODEL} {LAST}: 600 rows, drifted: "), out
            ((method, path, body),) = gateway.requests
            assert (method, path) == ("PUT", f"/metrics/job/ml_monitoring/model/{MODEL}")
            pushed[name] = without_run_times(body)
    first = bucket.read(result_key(LAST))
    assert first == local_result(root, LAST), "the same result, byte for byte"
    assert pushed["s3"] == pushed["disk"], "the same metrics pushed"
    assert 'ml_feature_drift_detected{feature="floor_area_m2",model_version="v1"} 1.0' in "\n".join(
        pushed["s3"]
    )

    code, _, err = run_cli(on_s3, "monitor", "--model", MODEL, "--date", LAST.isoformat(),
                           "--no-push")  # fmt: skip
    assert code == 0, err
    assert bucket.read(result_key(LAST)) == first, "a rerun writes the same bytes"
    day = f"lake/monitoring/model={MODEL}/batch_date={LAST}/"
    assert bucket.keys(day) == [day + "report.html", day + "result.json"], "nothing else left"
    assert bucket.keys(f"lake/monitoring/model={MODEL}/.locks/") == [], "the lock is released"


@pytest.mark.prefect
def test_backfill_on_s3_writes_every_day_as_on_disk_and_exports_the_history(
    worlds, tmp_path: Path
) -> None:
    bucket, on_s3, root, on_disk = worlds
    exported = {}
    for name, env in (("s3", on_s3), ("disk", on_disk)):
        file = tmp_path / f"{name}.om.txt"
        code, out, err = run_cli(env, "backfill", "--model", MODEL, "--start", START.isoformat(),
                                 "--end", LAST.isoformat(), "--openmetrics", str(file))  # fmt: skip
        assert code == 0, err + out
        exported[name] = without_run_times(file.read_bytes())
    assert exported["s3"] == exported["disk"], "the same history, at the same timestamps"
    assert any(line.startswith("ml_batch_rows{") for line in exported["s3"])
    results = {}
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        results[day] = bucket.read(result_key(day))
        assert results[day] == local_result(root, day), day

    # run again, into a Prometheus data directory: the days' results are rewritten unchanged
    data = tmp_path / "prometheus-data"
    code, out, err = run_cli(on_s3, "backfill", "--model", MODEL, "--start", START.isoformat(),
                             "--end", LAST.isoformat(), "--prometheus-data", str(data))  # fmt: skip
    assert code == 0, err + out
    assert [p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")], out
    for day, before in results.items():
        assert bucket.read(result_key(day)) == before, f"{day} changed on a rerun"
    assert [k for k in bucket.keys("lake/") if "/.tmp-" in k] == []


# --- faults on S3 --------------------------------------------------------------------------------


@pytest.mark.prefect
def test_bad_input_and_a_missing_batch_on_s3_are_named_and_write_nothing(
    s3: S3Bucket, energy_files: Path
) -> None:
    env = energy_world(s3, energy_files, days=2, rows_per_day=300)
    lake = Lake.open(env["DATA_LAKE_URI"])
    day = START + timedelta(days=1)
    (batch,) = lake.files(lake.scored_dir(MODEL, day), ".parquet")
    lake.write_table(batch, lake.read_parquet(batch).drop_columns(["occupants"]))
    with recording_pushgateway() as gateway:
        env = {**env, "PUSHGATEWAY_URL": gateway.url}
        code, _, err = run_cli(env, "monitor", "--model", MODEL, "--date", day.isoformat())
        assert code == 2, err
        ((line),) = err.splitlines()
        assert line.startswith(
            f"driftline: error: batch {day} (s3://{s3.name}/lake/scored/model={MODEL}/"
            f"batch_date={day}) lacks column 'occupants'"
        ), line
        assert s3.keys(f"lake/monitoring/model={MODEL}/batch_date={day}/") == []

        missing = START + timedelta(days=30)
        code, _, err = run_cli(env, "monitor", "--model", MODEL, "--date", missing.isoformat())
        assert code == 1, err
        assert err == (
            f"driftline: error: no scored batch for model={MODEL} batch_date={missing}: no "
            f"*.parquet under s3://{s3.name}/lake/scored/model={MODEL}/batch_date={missing} "
            f"(scored batches: {START} .. {day}, 2 day(s))\n"
        )
        # each failed night pushed only its failure, into the model's group
        reasons = [failure_labels(*request)["reason"] for request in gateway.requests]
        assert reasons == ["input", "error"]
    assert s3.keys("lake/monitoring/") == []
    assert "driftline-test-secret" not in err


class _Payload:
    """Unpickling this runs code: it creates the file named in `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_model_file_changed_on_s3_is_refused_before_it_is_unpickled(
    s3: S3Bucket, energy_files: Path, tmp_path: Path
) -> None:
    env = energy_world(s3, energy_files, days=1, rows_per_day=100)
    marker = tmp_path / "unpickled"
    payload = io.BytesIO()
    joblib.dump(_Payload(marker), payload)
    s3.put(f"registry/{MODEL}/v1/{MODEL_FILE}", payload.getvalue())
    shown = f"s3://{s3.name}/registry/{MODEL}/v1/{MODEL_FILE}"

    registry = Registry.open(env["MODEL_REGISTRY_URI"])
    with pytest.raises(InputError, match=f"{shown}: sha256 .* does not match its card"):
        registry.load(MODEL)
    with pytest.raises(InputError, match=f"{shown}: sha256 "):
        inputs.load_model_context(registry, MODEL)  # the nightly run's check
    code, _, err = run_cli(env, "simulate", "--model", MODEL, "--start", "2026-06-01",
                           "--days", "1")  # fmt: skip
    assert code == 2
    assert f"{shown}: sha256 " in err and "register the model again" in err
    assert not marker.exists(), "the tampered file was unpickled"


def test_a_run_killed_mid_write_on_s3_leaves_nothing_half_written_and_the_rerun_completes(
    s3: S3Bucket, energy_files: Path, tmp_path: Path
) -> None:
    env = energy_world(s3, energy_files, days=2, rows_per_day=300)
    day = START + timedelta(days=1)
    settings = load_settings(env, push=False)
    lake = Lake.open(settings.data_lake_uri)
    argv = [sys.executable, "-m", "tests.s3", "nightly", "--model", MODEL, "--date",
            day.isoformat()]  # fmt: skip
    run_env = {**os.environ, **env, "DRIFTLINE_FAULT_PAUSE_AT": "write-temp"}
    with procs.launched(argv, out=tmp_path / "out", err=tmp_path / "err", env=run_env,
                        cwd=REPO) as run:  # fmt: skip
        procs.wait_for(
            lambda: _still_running(run) and "paused at write-temp" in run.stderr(),
            timeout_seconds=120, what="the run to pause with its result in a temporary object",
        )  # fmt: skip
        run.kill()
    folder = f"lake/monitoring/model={MODEL}/batch_date={day}/"
    # on S3 the result is uploaded whole or not at all, straight to its name: nothing is left
    assert s3.keys(folder) == []
    assert lake.result_dates(MODEL) == [], "a half-finished day is not a result"
    assert lake.files(lake.result_path(MODEL, day).rsplit("/", 1)[0]) == []
    assert s3.keys(f"lake/monitoring/model={MODEL}/.locks/"), "the dead run's lock stays"

    # an upload that fails before its move leaves the target as it was, and no temporary object
    class Interrupted(Exception):
        pass

    def interrupt() -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        lake.write_bytes(lake.result_path(MODEL, START), b"half", before_commit=interrupt)
    assert s3.keys(f"lake/monitoring/model={MODEL}/batch_date={START}/") == []

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        written = nightly(MODEL, day)  # takes over the dead run's lock, clears its leftovers
    assert s3.keys(folder) == [folder + "result.json"]
    assert s3.read(folder + "result.json") == written
    assert s3.keys(f"lake/monitoring/model={MODEL}/.locks/") == []
    assert lake.result_dates(MODEL) == [day]


def _still_running(run: procs.Process) -> bool:
    if not run.running():
        raise AssertionError(f"the run exited {run.popen.returncode}:\n{run.log_tail()}")
    return True

"""The fleet flow: one flow run monitors a slice of models, each on its own, and a model that
fails is named in the run while the others are written and pushed as their own runs would be."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.errors import InputError
from core.settings import NIGHTLY_CRON, load_settings
from data_lake.lake import Lake
from driftline.cli import main
from flows.deployments import NIGHTLY_CONCURRENCY_LIMIT, deployments
from scripts.fleet.fleet import (
    START,
    build_fleet,
    expected_samples,
    local_results,
    parse_samples,
    per_model_run,
)
from tasks.day.fleet import split
from tasks.reports.fleet import MESSAGE_CHARACTERS, fleet_markdown, fleet_message
from tasks.results.fleet import FleetReport, ModelNight
from tests.pushgateway_recorder import failure_labels, recording_pushgateway, serving

DAYS = 3
DAY = START + timedelta(days=DAYS - 1)


# --- slices ---------------------------------------------------------------------------------


def test_slices_hold_every_model_once_and_come_out_the_same_whatever_the_order() -> None:
    models = [f"model-{i:03d}" for i in range(103)]
    slices = split(models, 4)
    assert sorted(m for s in slices for m in s) == models
    assert split(list(reversed(models)) + models[:5], 4) == slices  # order and repeats ignored
    assert {len(s) for s in slices} == {25, 26}  # the night ends when the largest slice does


def test_more_slices_than_models_leaves_slices_empty_and_deploys_none_for_them() -> None:
    assert split(["b", "a"], 3) == [["a"], ["b"], []]
    assert [d.name for d in deployments(["a", "b"], slices=3)] == [
        "fleet-1-of-3",
        "fleet-2-of-3",
        "backfill",
    ]


def test_a_slice_count_below_one_or_a_bad_name_is_bad_input() -> None:
    with pytest.raises(InputError, match="slices must be at least 1"):
        split(["a"], 0)
    with pytest.raises(InputError, match="model name 'a b' is not allowed"):
        split(["a b"], 2)


def test_driftline_serve_with_slices_serves_the_fleet_deployments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[list[str]] = []
    monkeypatch.setattr("driftline.terminal.flow_environment", lambda: None)  # no server here
    monkeypatch.setattr(
        "flows.deployments.prefect_serve", lambda *found: served.append([d.name for d in found])
    )
    monkeypatch.setenv("DRIFTLINE_MODELS", "gem-c,gem-a,gem-b")
    assert main(["serve", "--slices", "2"]) == 0
    assert main(["serve"]) == 0
    assert served == [
        ["fleet-1-of-2", "fleet-2-of-2", "backfill"],
        ["monitor-gem-c", "monitor-gem-a", "monitor-gem-b", "backfill"],  # as configured
    ]
    assert main(["serve", "--slices", "0"]) == 2
    assert "slices must be at least 1 (got 0)" in capsys.readouterr().err
    assert len(served) == 2  # nothing served


def test_fleet_deployments_run_each_slice_nightly_one_at_a_time_instead_of_each_model() -> None:
    models = ["gem-a", "gem-b", "gem-c"]
    served = deployments(models, slices=2)
    fleets = {d.name: d for d in served if d.flow_name == "fleet"}
    assert sorted(fleets) == ["fleet-1-of-2", "fleet-2-of-2"]
    assert not [d for d in served if d.flow_name == "monitor"]  # each model runs once a night
    assert [d.parameters for d in fleets.values()] == [
        {"models": ["gem-a", "gem-c"], "name": "fleet-1-of-2"},
        {"models": ["gem-b"], "name": "fleet-2-of-2"},
    ]
    for d in fleets.values():
        (schedule,) = d.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (NIGHTLY_CRON, "UTC")
        assert d.concurrency_limit == NIGHTLY_CONCURRENCY_LIMIT
    # without --slices, one nightly deployment per model, as before
    assert [d.name for d in deployments(models)] == [*(f"monitor-{m}" for m in models), "backfill"]


# --- what a user reads --------------------------------------------------------------------------


def test_the_final_message_and_the_summary_name_every_failed_model_with_its_reason() -> None:
    day = date(2026, 3, 2)
    nights = [
        ModelNight("gem-b", day, None, "batch 2026-03-02 lacks column 'carat'", 0.0),
        ModelNight("gem-a", day, None, "model 'gem-a' has no version 'production'", 0.0),
        *(ModelNight(f"ok-{i}", day, None, None, 1.0) for i in range(3)),
    ]
    report = FleetReport.of("fleet-1-of-2", day, nights, 12.0)
    message = fleet_message(report)
    assert message.splitlines()[0] == (
        "fleet-1-of-2 2026-03-02: 3 of 5 model(s) monitored in 12.0 s; 2 failed: gem-a, gem-b"
    )
    assert "gem-b: batch 2026-03-02 lacks column 'carat'" in message
    summary = fleet_markdown(report)
    assert "| gem-a | model 'gem-a' has no version 'production' |" in summary
    many = [ModelNight(f"m-{i}", day, None, "x" * 300, 0.0) for i in range(50)]
    assert len(fleet_message(FleetReport.of("f", day, many, 1.0))) <= MESSAGE_CHARACTERS


# --- one real fleet run ---------------------------------------------------------------------


@dataclass
class Gateway:
    """A Pushgateway stand-in: takes every push but those of `refused`, keeps what it took
    (a group replaced, PUT, or added to, POST)."""

    refused: str
    url: str = ""
    taken: dict[str, list[bytes]] = field(default_factory=dict)
    added: dict[str, list[tuple[str, str, bytes]]] = field(default_factory=dict)
    refusals: int = 0


@contextmanager
def gateway(refused: str) -> Iterator[Gateway]:
    seen = Gateway(refused)

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            model = self.path.rsplit("/model/", 1)[1]
            if model == seen.refused:
                seen.refusals += 1
                self.send_response(500)
            else:
                seen.taken.setdefault(model, []).append(body)
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            model = self.path.rsplit("/model/", 1)[1]
            seen.added.setdefault(model, []).append((self.command, self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as seen.url:
        yield seen


def _without_column(lake: Path, model: str, day: date, column: str) -> None:
    for file in (lake / "scored" / f"model={model}" / f"batch_date={day}").glob("*.parquet"):
        pq.write_table(pq.read_table(file).drop_columns([column]), file)


@pytest.mark.prefect
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_run_writes_and_pushes_each_model_as_its_own_run_and_names_those_that_failed(
    tmp_path: Path, diamonds_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.fleet import fleet

    shutil.copytree(diamonds_registry, tmp_path / "registry")
    env = {
        "DATA_LAKE_URI": str(tmp_path / "lake"),
        "MODEL_REGISTRY_URI": str(tmp_path / "registry"),
        "DRIFTLINE_CACHE_DIR": str(tmp_path / "cache"),
        "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
    }
    settings = load_settings(env)
    good, bad_batch, unregistered, refused = "gem-a", "gem-bad", "gem-gone", "gem-refused"
    build_fleet(settings, [good, "gem-b", bad_batch, refused], days=DAYS, rows_per_day=300,
                distinct=1)  # fmt: skip
    _without_column(tmp_path / "lake", bad_batch, DAY, "carat")
    for dataset in ("scored", "labels"):  # its batches are there, its registry entry is not
        shutil.copytree(tmp_path / "lake" / dataset / f"model={good}",
                        tmp_path / "lake" / dataset / f"model={unregistered}")  # fmt: skip
    with gateway(refused) as pushgateway:
        for key, value in {**env, "PUSHGATEWAY_URL": pushgateway.url}.items():
            monkeypatch.setenv(key, value)
        state = fleet(
            models=[good, bad_batch, unregistered, "gem-b", refused],
            batch_date=DAY,
            name="fleet-test",
            return_state=True,
        )
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )

    # the run ends Failed after every model ran, and says which models failed and why
    assert state.is_failed()
    head, *reasons = str(state.message).splitlines()
    assert head.startswith(f"fleet-test {DAY}: 2 of 5 model(s) monitored in ")
    assert head.endswith(f"; 3 failed: {bad_batch}, {unregistered}, {refused}")
    assert any(r.startswith(f"{bad_batch}: batch {DAY}") and "'carat'" in r for r in reasons)
    assert any(r.startswith(f"{unregistered}: model '{unregistered}'") for r in reasons)
    assert any(r.startswith(f"{refused}: could not push") for r in reasons)
    assert artifact.key == "summary-fleet-test"
    summary = str(artifact.data)
    assert all(f"| {m} |" in summary for m in (good, "gem-b", bad_batch, unregistered, refused))

    lake = Lake.open(settings.data_lake_uri)
    for model in (good, "gem-b"):
        # the same bytes as the model's own run, and one push of the same gauges
        stored = lake.read_bytes(lake.result_path(model, DAY))
        assert stored == per_model_run(settings, model, DAY, tmp_path / "per-model")
        (pushed,) = pushgateway.taken[model]
        (result,) = local_results(settings, model, [DAY])
        assert parse_samples(pushed.decode()) == expected_samples(result)
    # bad input writes nothing and pushes only its failure, added to the model's own group
    # (the last good gauges kept), as `driftline monitor` would
    assert lake.read_bytes(lake.result_path(bad_batch, DAY)) is None
    assert bad_batch not in pushgateway.taken
    (added,) = pushgateway.added[bad_batch]
    assert failure_labels(*added) == {"model": bad_batch, "model_version": "v1", "reason": "input"}
    # a model the registry does not know writes and pushes nothing (it has no group to report
    # in); the good models' groups are only replaced, and a refused push adds no failure that
    # would hide the Pushgateway's own push_failure_time_seconds
    assert lake.read_bytes(lake.result_path(unregistered, DAY)) is None
    assert unregistered not in pushgateway.taken
    assert sorted(pushgateway.added) == [bad_batch]
    # a refused push is tried again with the configured delays, and the result stays written
    assert pushgateway.refusals == 2
    assert lake.read_bytes(lake.result_path(refused, DAY)) is not None


@pytest.mark.prefect
def test_a_model_is_tried_again_only_when_storage_fails_and_then_named_with_the_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """...and its failure is pushed once, after its last attempt."""
    from prefect import flow

    from tasks.day import fleet, fleet_steps

    attempts = {"flaky-disk": 0, "bad-input": 0, "a-bug": 0}

    def night(
        settings: object, model: str, batch_date: date, *, push: bool, attempt: object
    ) -> ModelNight:
        attempts[model] += 1
        if model == "flaky-disk":
            raise OSError("Input/output error")
        if model == "bad-input":
            raise InputError("batch 2026-03-02 lacks column 'carat'")
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(fleet, "monitor_model", night)
    models = list(attempts)
    day = date(2026, 3, 2)

    @flow
    def nights() -> list[ModelNight]:
        settings = load_settings(push=True)
        task = fleet_steps.monitor_model.with_options(retry_delay_seconds=0)
        futures = task.map(settings, models, day, True)
        return fleet_steps.wait_for_models(settings, futures, models, day)

    with recording_pushgateway() as gateway:
        monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
        failures = {n.model: n.failure for n in nights()}
    assert attempts == {"flaky-disk": 4, "bad-input": 1, "a-bug": 1}
    pushed = sorted((labels["model"], labels["reason"]) for labels in
                    (failure_labels(*request) for request in gateway.requests))  # fmt: skip
    assert pushed == [("a-bug", "error"), ("bad-input", "input"), ("flaky-disk", "storage")]
    assert failures == {
        "flaky-disk": "monitor flaky-disk 2026-03-02: the data lake or registry kept failing "
        "after 4 attempts (Input/output error); no result was written or pushed for this day, "
        "and the next run starts over (no clean-up needed)",
        "bad-input": "batch 2026-03-02 lacks column 'carat'",
        "a-bug": "ZeroDivisionError: division by zero",
    }

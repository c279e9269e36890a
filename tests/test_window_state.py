"""Nights remember their performance window (monitoring/model=<model>/.window-state.arrow): a
night that reads only what changed since the last one writes the very bytes that a night reading
its whole window from the raw files writes, whatever happened in the lake in between."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import driftline
from core.errors import DriftlineError
from core.settings import Settings, load_settings
from data_lake.lake import Lake
from data_lake.storage import Storage
from model_registry.registry import Registry
from tasks.day.backfill import days_between, replay, write_replayed
from tasks.day.engine import monitor_and_write
from tasks.day.inputs import load_model_context, read_batch, read_window
from tasks.day.window_read import state_key
from tasks.edge import window_file
from tasks.performance.estimate import PerformanceEstimate, estimate_performance

MODEL = "tiny"
START = date(2026, 3, 1)
WINDOW_DAYS = 5
ROWS = 60


def night(n: int) -> date:
    return START + timedelta(days=n)


# --- builders ------------------------------------------------------------------------------


def _reference(rng: np.random.Generator, *, rows: int = 300) -> pd.DataFrame:
    a = rng.normal(10, 2, rows)
    return pd.DataFrame(
        {
            "a": a,
            "b": rng.choice(["x", "y", "z"], rows),
            "y": 3 * a + rng.normal(0, 1, rows),
            "prediction": 3 * a,
        }
    )


def _batch(day: date, seed: int, *, ids: list[str] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 2, ROWS)
    return pd.DataFrame(
        {
            "row_id": ids or [f"{day}-{i}" for i in range(ROWS)],
            "a": a,
            "b": rng.choice(["x", "y", "z"], ROWS),
            "prediction": 3 * a + rng.normal(0, 0.5, ROWS),
        }
    )


def _labels(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"row_id": rows["row_id"], "y": rows["prediction"] + rng.normal(0, 1, len(rows))}
    )


class World:
    """A private lake and registry; each night is run as the nightly run does, in-process."""

    def __init__(self, root: Path) -> None:
        self.lake_uri, self.registry_uri = str(root / "lake"), str(root / "registry")
        settings = load_settings({"DATA_LAKE_URI": self.lake_uri,
                                  "MODEL_REGISTRY_URI": self.registry_uri}, push=False)  # fmt: skip
        self.settings: Settings = dataclasses.replace(settings, performance_window_days=WINDOW_DAYS)
        self.lake = Lake.open(self.lake_uri)
        self.state = Path(self.lake.window_state_path(MODEL))

    def register(self) -> None:
        driftline.register_model(MODEL, None, _reference(np.random.default_rng(0)), target="y",
                                 categorical=("b",), registry=self.registry_uri)  # fmt: skip

    def write_batch(self, day: date, frame: pd.DataFrame) -> None:
        driftline.write_batch(MODEL, day, frame, lake=self.lake_uri, registry=self.registry_uri)

    def write_labels(self, arrival: date, name: str, frame: pd.DataFrame) -> None:
        directory = self.lake.labels_dir(MODEL, arrival)
        self.lake.write_table(
            f"{directory}/{name}", pa.Table.from_pandas(frame, preserve_index=False)
        )

    def run(self, day: date) -> str:
        """The night's result.json, or the one line of its error."""
        context = load_model_context(Registry.open(self.registry_uri), MODEL)
        try:
            monitor_and_write(self.lake, context, day, self.settings)
        except DriftlineError as exc:
            return f"error: {exc}"
        return Path(self.lake.result_path(MODEL, day)).read_text()

    def run_without_state(self, day: date) -> str:
        """The same night from the raw files alone; the state of the incremental nights is put
        back afterwards, so the next night goes on from it."""
        kept = self.state.read_bytes() if self.state.exists() else None
        self.state.unlink(missing_ok=True)
        try:
            return self.run(day)
        finally:
            self.state.unlink(missing_ok=True)
            if kept is not None:
                self.state.write_bytes(kept)


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.register()
    return world


@pytest.fixture(name="reads")
def reads_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The Parquet files the lake reads, in order."""
    seen: list[str] = []
    original = Storage.read_parquet

    def counting(self: Storage, path: str, *args: object, **kwargs: object) -> pa.Table:
        seen.append(path)
        return original(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Storage, "read_parquet", counting)
    yield seen


def _fill(world: World, nights: int) -> None:
    """`nights` batches, each labelled in thirds one, two and three days after it."""
    for n in range(nights):
        day = night(n)
        frame = _batch(day, seed=n)
        world.write_batch(day, frame)
        for delay, part in zip((1, 2, 3), np.array_split(frame.index, 3), strict=True):
            world.write_labels(
                day + timedelta(days=delay), f"batch-{day}.parquet", _labels(frame.loc[part], n)
            )


# --- the bar ---------------------------------------------------------------------------------


def test_every_night_from_the_state_is_the_bytes_of_a_full_reread_whatever_the_lake_did(
    world: World, reads: list[str]
) -> None:
    _fill(world, 14)
    # a label 5 days late for a batch still in the window, one for a batch already out of it
    old = _batch(night(3), seed=3).iloc[:5]
    world.write_labels(night(8), "late.parquet", _labels(old, 99))
    gone = _batch(night(0), seed=0).iloc[:3]
    world.write_labels(night(8), "too-late.parquet", _labels(gone, 98))
    # a label file without its target: the night whose newest labels it holds fails
    world.write_labels(night(10), "bad.parquet", pd.DataFrame({"row_id": ["x"]}))
    # batch 11 scores a row_id of batch 9: its own night fails, later ones leave it out
    world.write_batch(night(11), _batch(night(11), seed=11, ids=[f"{night(9)}-0"] + [
        f"{night(11)}-{i}" for i in range(1, ROWS)]))  # fmt: skip
    events = {
        # a second file lands in an arrival day that the night before has already read
        6: lambda: world.write_labels(
            night(6), "extra.parquet", _labels(_batch(night(4), seed=4).iloc[20:30], 97)
        ),
        # a batch of the window is written again with other predictions
        8: lambda: world.write_batch(night(6), _batch(night(6), seed=1006)),
        # an unreadable file in a batch of the window: its night fails, later ones leave it out
        12: lambda: Path(world.lake.scored_dir(MODEL, night(12)), "part-1.parquet").write_bytes(
            b"not parquet"
        ),
    }  # fmt: skip
    outcomes = []
    for n in range(14):
        if n in events:
            events[n]()
        reads.clear()
        incremental = world.run(night(n))
        read_incrementally = list(reads)
        full = world.run_without_state(night(n))
        assert incremental == full, f"night {n}"
        outcomes.append(incremental)
        if n in (2, 3, 4, 5, 7, 10):  # a quiet night: its batch and its new labels only
            labels = [p for p in read_incrementally if "/labels/" in p]
            scored = [p for p in read_incrementally if "/scored/" in p]
            assert all(f"arrival_date={night(n + 1)}/" in p for p in labels), labels
            # its own batch; the band check's batch (tasks/day/band.py) has the estimate its
            # own night made in the state, but for batch 6 on night 10: rewritten on night 8,
            # it has been read from its files since, and is estimated again
            band = [night(6)] if n == 10 else []
            assert scored == [
                f"{world.lake.scored_dir(MODEL, d)}/part-0.parquet" for d in [night(n), *band]
            ]
    failed = {n for n, o in enumerate(outcomes) if o.startswith("error:")}
    assert failed == {9, 11, 12}, [o[:200] for o in outcomes]
    assert "bad.parquet" in outcomes[9] and "'y'" in outcomes[9]
    assert f"already scored in batch {night(9)}" in outcomes[11]
    assert "part-1.parquet" in outcomes[12]
    assert "left out of the performance window" in outcomes[13]
    assert '"unmatched_labels": 3' in outcomes[7]  # the three labels for batch 0


def test_a_missing_or_damaged_state_is_rebuilt_from_the_raw_files(world: World) -> None:
    _fill(world, 4)
    first = world.run(night(3))
    world.state.write_bytes(b"not a state")
    assert world.run(night(3)) == first
    assert world.state.read_bytes()[:6] == b"ARROW1"  # written again, whole
    world.state.write_bytes(world.state.read_bytes()[:-200])  # cut short
    assert world.run(night(3)) == first
    world.state.unlink()
    assert world.run(night(3)) == first
    assert world.state.exists()


def test_the_state_keeps_each_nights_estimate_exactly_and_only_for_the_files_it_was_made_of(
    world: World,
) -> None:
    _fill(world, 4)
    world.run(night(3))
    card = Registry.open(world.registry_uri).card(MODEL)
    state = window_file.read_state(world.lake, state_key(card))
    assert state is not None
    made = load_model_context(Registry.open(world.registry_uri), MODEL)
    batch = read_batch(world.lake, card, night(3))
    assert state.scored[night(3)].estimate == estimate_performance(made.loss_estimator, batch.table)
    # awkward floats come back bit for bit
    odd = PerformanceEstimate(60, 60, 0.1 + 0.2, 5e-324, 1.7976931348623157e308, 1 / 3, 2**0.5)
    parts = {**state.scored, night(3): dataclasses.replace(state.scored[night(3)], estimate=odd)}
    again = window_file.from_bytes(
        window_file.to_bytes(dataclasses.replace(state, scored=parts)), state_key(card)
    )
    assert again is not None and again.scored[night(3)].estimate == odd
    # the batch written again: its partition, and with it the estimate, is read anew
    assert state.kept("scored", night(3), world.lake.scored_files(MODEL)[night(3)]) is not None
    world.write_batch(night(3), _batch(night(3), seed=1003))
    assert state.kept("scored", night(3), world.lake.scored_files(MODEL)[night(3)]) is None


def test_a_rerun_of_an_older_day_leaves_the_newer_state_alone(world: World) -> None:
    _fill(world, 6)
    world.run(night(5))
    newest = world.state.read_bytes()
    assert world.run(night(2)) == world.run_without_state(night(2))
    assert world.state.read_bytes() == newest


def test_a_backfill_then_nightly_runs_give_the_bytes_of_full_rereads(
    world: World, reads: list[str]
) -> None:
    _fill(world, 12)
    context = load_model_context(Registry.open(world.registry_uri), MODEL)
    days = days_between(night(0), night(8))
    window = read_window(world.lake, context.card, days[0], days[-1], window_days=WINDOW_DAYS)
    replayed = [replay(world.lake, context, window, day, world.settings) for day in days]
    write_replayed(world.lake, replayed, world.settings)
    assert world.state.exists()
    for n in (9, 10, 11):
        reads.clear()
        incremental = world.run(night(n))
        labels = [p for p in reads if "/labels/" in p]
        assert len(labels) == 3, reads  # the three files that arrived for the night
        # its own batch only: the batch whose band it checks has the backfill's estimate
        scored = [p for p in reads if "/scored/" in p]
        assert scored == [f"{world.lake.scored_dir(MODEL, night(n))}/part-0.parquet"], scored
        assert incremental == world.run_without_state(night(n))


def test_a_window_of_another_length_or_another_model_version_reads_what_it_lacks(
    world: World,
) -> None:
    _fill(world, 8)
    world.run(night(6))
    longer = dataclasses.replace(world.settings, performance_window_days=7)
    world.settings = longer
    assert world.run(night(7)) == world.run_without_state(night(7))
    world.register()  # v2: the state of v1 is not used, and is replaced
    assert world.run(night(7)) == world.run_without_state(night(7))


# --- a classifier ----------------------------------------------------------------------------


def test_a_classifiers_nights_from_the_state_are_the_bytes_of_full_rereads(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(0, 1, 400), "c": rng.normal(0, 1, 400)})
    y = np.where(x["a"] + rng.normal(0, 0.5, 400) > 0, "yes", "no")
    model = LogisticRegression().fit(x.iloc[:200], y[:200])
    world = World(tmp_path)
    card = driftline.register_model(MODEL, model, x.iloc[200:].assign(label=y[200:]),
                                    target="label", registry=world.registry_uri)  # fmt: skip
    for n in range(6):
        day = night(n)
        frame = pd.DataFrame({"a": rng.normal(0, 1, ROWS), "c": rng.normal(0, 1, ROWS)})
        proba = model.predict_proba(frame)
        frame = frame.assign(row_id=[f"{day}-{i}" for i in range(ROWS)],
                             prediction=model.predict(frame))  # fmt: skip
        for i, label in enumerate(card.classes):
            frame[f"proba_{label}"] = proba[:, i]
        world.write_batch(day, frame)
        truth = np.where(frame["a"] > 0, "yes", "no")
        for delay, part in zip((1, 2), np.array_split(frame.index, 2), strict=True):
            world.write_labels(day + timedelta(days=delay), f"batch-{day}.parquet",
                               pd.DataFrame({"row_id": frame.loc[part, "row_id"],
                                             "label": truth[part]}))  # fmt: skip
    for n in range(6):
        incremental = world.run(night(n))
        assert '"accuracy"' in incremental or n == 0
        assert incremental == world.run_without_state(night(n)), f"night {n}"


def test_a_batch_folder_left_empty_is_named_as_the_lake_stands_each_night(world: World) -> None:
    _fill(world, 6)
    Path(world.lake.scored_dir(MODEL, night(3)), "part-0.parquet").unlink()  # the folder stays
    assert world.run(night(4)) == world.run_without_state(night(4))
    world.write_batch(night(9), _batch(night(9), seed=9))  # the lake now holds one day more
    fifth = world.run(night(5))
    assert fifth == world.run_without_state(night(5))
    assert f"batch {night(3)} is left out of the performance window" in fifth
    assert "2026-03-10, 7 day(s)" in fifth  # counted that night, not remembered

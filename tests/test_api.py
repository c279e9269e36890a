"""The Python API: the jobs around the monitor register a model, write a day and monitor it
with the same rules as the command line and the nightly run."""

from __future__ import annotations

import ast
import json
import runpy
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import joblib
import pandas as pd
import pyarrow as pa
import pytest

import driftline
from core.errors import InputError
from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands
from driftline.cli import main
from model_registry.registry import MODEL_FILE, Registry
from tasks.day.backfill import replay, write_replayed
from tasks.day.inputs import load_model_context, read_batch, read_window
from tasks.edge.validation import validate_labels
from tests import builders
from tests.pushgateway_recorder import only_failure, recording_pushgateway
from tests.test_second_model import energy_table, write_energy_model

REPO = Path(__file__).resolve().parents[1]
ENERGY = "house-energy"
ENERGY_FEATURES = ["floor_area_m2", "occupants", "region", "has_heat_pump"]
ENERGY_CATEGORICAL = ["region", "has_heat_pump"]
DAY = date(2026, 3, 2)


@pytest.fixture(scope="module")
def energy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the energy team's model.joblib and reference, registered with the API."""
    folder = tmp_path_factory.mktemp("energy")
    write_energy_model(folder)
    driftline.register_model(
        ENERGY,
        joblib.load(folder / "energy.joblib"),
        pd.read_parquet(folder / "energy-reference.parquet"),
        target="kwh_per_month",
        categorical=ENERGY_CATEGORICAL,
        registry=str(folder / "registry"),
    )
    return folder


@pytest.fixture
def energy_env(energy: Path, lake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Lake:
    """The energy registry and a private lake, through the environment as the CLI reads them."""
    monkeypatch.setenv("MODEL_REGISTRY_URI", str(energy / "registry"))
    monkeypatch.setenv("DATA_LAKE_URI", lake_env["DATA_LAKE_URI"])
    return Lake.open(lake_env["DATA_LAKE_URI"])


def scored_energy(rows: int, seed: int, day: date = DAY) -> pd.DataFrame:
    frame = energy_table(rows, seed=seed)
    frame.insert(0, "row_id", [f"{day}-{i}" for i in range(rows)])
    frame["prediction"] = frame.pop("kwh_per_month") * 1.01
    return frame


def code_lines(path: Path) -> int:
    """Lines of a script that are not its docstring or blank."""
    tree = ast.parse(path.read_text())
    statements = [s for s in tree.body if not isinstance(s, ast.Expr)]
    first, last = statements[0].lineno, max(s.end_lineno or s.lineno for s in statements)
    lines = path.read_text().splitlines()[first - 1 : last]
    return sum(1 for line in lines if line.strip())


# --- writing a day ---------------------------------------------------------------------------


def test_the_scoring_job_example_writes_a_days_batch_and_labels_in_ten_lines(
    energy: Path, energy_env: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = REPO / "docs" / "examples" / "scoring_job.py"
    assert code_lines(example) <= 10
    shutil.copy(energy / "energy.joblib", tmp_path / "model.joblib")
    rows = energy_table(200, seed=5)
    labels = pd.DataFrame(
        {"row_id": [f"r{i}" for i in range(200)], "kwh_per_month": rows.pop("kwh_per_month")}
    )
    rows.insert(0, "row_id", labels["row_id"])
    rows.to_parquet(tmp_path / "rows-2026-03-02.parquet")
    labels.iloc[:120].to_parquet(tmp_path / "labels.parquet")
    monkeypatch.chdir(tmp_path)

    runpy.run_path(str(example), run_name="__main__")

    batch = energy_env.read_scored(ENERGY, DAY)
    assert batch.column("row_id").to_pylist() == rows["row_id"].tolist()
    assert batch.column("prediction").null_count == 0
    (label_file,) = energy_env.files(energy_env.labels_dir(ENERGY, DAY), ".parquet")
    assert energy_env.read_parquet(label_file).num_rows == 120


def test_a_batch_lacking_a_feature_is_refused_with_the_nightly_message_and_nothing_is_written(
    energy_env: Lake,
) -> None:
    bad = scored_energy(50, seed=3).drop(columns="region")
    with pytest.raises(InputError) as refused:
        driftline.write_batch(ENERGY, DAY, bad)
    assert not energy_env.exists(energy_env.scored_dir(ENERGY, DAY))

    # the same frame written by hand: the nightly run refuses it with the same words
    energy_env.write_table(
        f"{energy_env.scored_dir(ENERGY, DAY)}/by-hand.parquet",
        pa.Table.from_pandas(bad, preserve_index=False),
    )
    card = Registry.open(load_settings().model_registry_uri).card(ENERGY)
    with pytest.raises(InputError) as nightly:
        read_batch(energy_env, card, DAY)
    assert str(refused.value) == str(nightly.value)
    assert "lacks column 'region'" in str(refused.value)


def test_writing_the_same_day_twice_leaves_one_file_with_the_second_frames_rows(
    energy_env: Lake,
) -> None:
    driftline.write_batch(ENERGY, DAY, scored_energy(80, seed=1))
    second = scored_energy(30, seed=2)
    uri = driftline.write_batch(ENERGY, DAY.isoformat(), pa.Table.from_pandas(second))

    files = energy_env.files(energy_env.scored_dir(ENERGY, DAY), ".parquet")
    assert [energy_env.uri_of(f) for f in files] == [uri]
    batch = energy_env.read_scored(ENERGY, DAY).to_pandas()
    assert batch["row_id"].tolist() == second["row_id"].tolist()
    assert batch["prediction"].tolist() == second["prediction"].tolist()


def test_labels_written_again_for_an_arrival_day_replace_that_days_labels(
    energy_env: Lake,
) -> None:
    arrival = DAY + timedelta(days=2)
    first = pd.DataFrame({"row_id": ["a", "b", "c"], "kwh_per_month": [1.0, 2.0, 3.0]})
    second = pd.DataFrame({"row_id": ["d"], "kwh_per_month": [4.0]})
    driftline.write_labels(ENERGY, arrival, first)
    driftline.write_labels(ENERGY, arrival, second)
    driftline.write_labels(ENERGY, arrival + timedelta(days=1), first)

    (only,) = energy_env.files(energy_env.labels_dir(ENERGY, arrival), ".parquet")
    assert energy_env.read_parquet(only).to_pandas().equals(second)
    assert (
        len(energy_env.files(energy_env.labels_dir(ENERGY, arrival + timedelta(1)), ".parquet"))
        == 1
    )


def test_labels_without_the_target_are_refused_as_the_nightly_run_refuses_them(
    energy_env: Lake,
) -> None:
    labels = pa.table({"row_id": ["a"], "kwh": [1.0]})
    with pytest.raises(InputError) as refused:
        driftline.write_labels(ENERGY, DAY, labels)
    path = energy_env.uri_of(f"{energy_env.labels_dir(ENERGY, DAY)}/part-0.parquet")
    with pytest.raises(InputError) as nightly:
        validate_labels(labels, target="kwh_per_month", source=path)
    assert str(refused.value) == str(nightly.value)
    assert not energy_env.exists(energy_env.labels_dir(ENERGY, DAY))


def test_a_bad_date_is_refused_with_the_expected_form(energy_env: Lake) -> None:
    with pytest.raises(InputError, match=r"batch_date '2026-13-01' is not a date; pass"):
        driftline.write_batch(ENERGY, "2026-13-01", scored_energy(5, seed=1))


# --- registering -----------------------------------------------------------------------------


def test_register_model_gives_the_card_driftline_register_gives(
    energy: Path, tmp_path: Path
) -> None:
    by_api = Registry.open(str(energy / "registry")).card(ENERGY)
    code = main([
        "--registry", str(tmp_path / "registry"), "register", "--model", ENERGY,
        "--artifact", str(energy / "energy.joblib"),
        "--reference", str(energy / "energy-reference.parquet"),
        "--target", "kwh_per_month", "--categorical", ",".join(ENERGY_CATEGORICAL),
    ])  # fmt: skip
    assert code == 0
    by_cli = Registry.open(str(tmp_path / "registry")).card(ENERGY)
    assert by_api.features == by_cli.features
    assert by_api.metrics == by_cli.metrics
    assert by_api.target == by_cli.target == "kwh_per_month"
    assert set(by_api.sha256) == set(by_cli.sha256) and MODEL_FILE in by_api.sha256
    assert by_api.sha256["reference.parquet"] == by_cli.sha256["reference.parquet"]
    assert Registry.open(str(energy / "registry")).resolve(ENERGY) == by_api.version


def test_a_reference_with_predictions_registers_without_a_model_and_is_monitored(
    tmp_path: Path,
) -> None:
    reference = builders.batch(2000, seed=7, target="price").drop_columns(["model_version"])
    registry, lake = str(tmp_path / "registry"), str(tmp_path / "lake")
    card = driftline.register_model(
        "toy", None, reference, target="price", categorical=["cut"], registry=registry
    )
    assert MODEL_FILE not in card.sha256 and "reference.parquet" in card.sha256
    Registry.open(registry).verify(card)  # every file it stored is hashed and matches
    assert [f.name for f in card.features] == ["carat", "depth", "cut"]

    driftline.write_batch(
        "toy", DAY, builders.batch(300, seed=8, day=DAY), lake=lake, registry=registry
    )
    result = driftline.monitor_day("toy", DAY, lake=lake, registry=registry)
    assert result.model_version == card.version and result.n_rows == 300
    assert sorted(f.feature for f in result.features) == ["carat", "cut", "depth"]
    assert Path(Lake.open(lake).result_path("toy", DAY)).is_file()


def test_a_reference_without_predictions_needs_a_model() -> None:
    reference = builders.batch(50, target="price").drop_columns(["prediction"])
    with pytest.raises(InputError, match="no 'prediction' column and estimator is None"):
        driftline.register_model("toy", None, reference, target="price")


def test_a_classifier_reference_without_probabilities_names_the_columns() -> None:
    with pytest.raises(InputError, match=r"no proba_<class> columns and no model"):
        driftline.register_model("toy", None, builders.batch(50, target="price"), target="price",
                                 task="classification")  # fmt: skip


def test_register_without_artifact_or_predictions_names_both_fixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "ref.parquet"
    energy_table(50, seed=1).to_parquet(reference)
    code = main(["--registry", str(tmp_path / "registry"), "register", "--model", ENERGY,
                 "--reference", str(reference), "--target", "kwh_per_month"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"reference {reference} has no 'prediction' column and no --artifact" in err
    assert "pass --artifact model.joblib, or add the model's predictions" in err
    assert not (tmp_path / "registry").exists()


def test_register_takes_a_reference_with_predictions_and_no_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "ref.parquet"
    scored_energy(400, seed=4).drop(columns="row_id").assign(
        kwh_per_month=energy_table(400, seed=4)["kwh_per_month"]
    ).to_parquet(reference)
    code = main(["--registry", str(tmp_path / "registry"), "register", "--model", ENERGY,
                 "--reference", str(reference), "--target", "kwh_per_month", "--task",
                 "regression", "--categorical", "region,has_heat_pump"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "registry" / ENERGY / "v1" / "card.json").read_text())
    assert MODEL_FILE not in card["sha256"]
    assert not (tmp_path / "registry" / ENERGY / "v1" / MODEL_FILE).exists()


def test_simulate_refuses_a_version_without_a_model_file(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    driftline.register_model("toy", None, builders.batch(300, target="price"), target="price",
                             categorical=["cut"], registry=registry)  # fmt: skip
    settings = load_settings({"MODEL_REGISTRY_URI": registry, "DATA_LAKE_URI": str(tmp_path)})
    with pytest.raises(InputError, match=r"registered without a model file .* --artifact"):
        commands.simulate(settings, model="toy", start=DAY, days=1, rows_per_day=10,
                          scenario="none", seed=0)  # fmt: skip


# --- monitoring a day ------------------------------------------------------------------------


@pytest.mark.slow
def test_monitor_day_writes_the_result_json_the_backfill_writes_for_that_day(
    diamonds_registry: Path, tmp_path: Path
) -> None:
    once, replayed = tmp_path / "once", tmp_path / "replayed"
    settings = load_settings(
        {"DATA_LAKE_URI": str(once), "MODEL_REGISTRY_URI": str(diamonds_registry)}, push=False
    )
    commands.simulate(settings, model="diamonds-price", start=DAY - timedelta(days=8), days=9,
                      rows_per_day=200, scenario="both", seed=1)  # fmt: skip
    shutil.copytree(once, replayed)
    day = DAY - timedelta(days=4)

    result = driftline.monitor_day(
        "diamonds-price", day, lake=str(once), registry=str(diamonds_registry)
    )

    lake = Lake.open(str(replayed))
    context = load_model_context(Registry.open(str(diamonds_registry)), "diamonds-price")
    window = read_window(lake, context.card, day - timedelta(days=2), DAY, window_days=30)
    (outcome,) = write_replayed(lake, [replay(lake, context, window, day, settings)], settings)
    assert outcome.result == result
    written = Lake.open(str(once)).read_bytes(
        Lake.open(str(once)).result_path("diamonds-price", day)
    )
    assert written is not None and written == lake.read_bytes(
        lake.result_path("diamonds-price", day)
    )


def test_monitor_day_with_push_says_a_failed_day_in_the_models_group_as_the_nightly_run_does(
    energy_env: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = Registry.open(load_settings().model_registry_uri).card(ENERGY)
    bad = scored_energy(50, seed=3).drop(columns="region")
    energy_env.write_table(
        f"{energy_env.scored_dir(ENERGY, DAY)}/by-hand.parquet",
        pa.Table.from_pandas(bad, preserve_index=False),
    )
    with recording_pushgateway() as pushgateway:
        monkeypatch.setenv("PUSHGATEWAY_URL", pushgateway.url)
        with pytest.raises(InputError, match="lacks column 'region'"):
            driftline.monitor_day(ENERGY, DAY, push=True)
        assert only_failure(pushgateway) == {
            "model": ENERGY, "model_version": card.version, "reason": "input"
        }  # fmt: skip
        assert not energy_env.exists(energy_env.result_path(ENERGY, DAY))

        pushgateway.requests.clear()  # without push, a failed day pushes nothing
        with pytest.raises(InputError):
            driftline.monitor_day(ENERGY, DAY)
        assert pushgateway.requests == []

        driftline.write_batch(ENERGY, DAY, scored_energy(50, seed=3))  # the day fixed
        driftline.monitor_day(ENERGY, DAY, push=True)
        ((method, path, _),) = pushgateway.requests  # the good day's PUT replaces the group
        assert (method, path) == ("PUT", f"/metrics/job/ml_monitoring/model/{ENERGY}")


# --- the package -----------------------------------------------------------------------------


def test_importing_the_command_line_imports_no_data_library() -> None:
    heavy = ["pandas", "pyarrow", "prefect", "scipy", "sklearn"]
    code = f"import sys, driftline.cli; print([m for m in {heavy!r} if m in sys.modules])"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=REPO)  # fmt: skip
    assert shown.stdout.strip() == "[]"


def test_the_four_verbs_are_importable_from_the_package() -> None:
    from driftline import monitor_day, register_model, write_batch, write_labels

    assert all(callable(f) for f in (monitor_day, register_model, write_batch, write_labels))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        driftline.nothing  # noqa: B018


@pytest.mark.slow
def test_the_contracts_python_example_runs_from_training_to_a_monitored_day(
    lake_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = (REPO / "docs" / "contract.md").read_text()
    section = contract.split("\n## Python API\n", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    for variable in ("DATA_LAKE_URI", "MODEL_REGISTRY_URI"):
        monkeypatch.setenv(variable, lake_env[variable])
    monkeypatch.chdir(REPO)

    exec(compile(example, "docs/contract.md", "exec"), {"__name__": "__main__"})

    assert capsys.readouterr().out.startswith("500 rows; drifted:")
    lake = Lake.open(lake_env["DATA_LAKE_URI"])
    assert lake.result_dates("diamonds-hgb") == [DAY]

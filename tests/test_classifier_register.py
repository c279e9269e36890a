"""Registering a classifier: the task inferred or given, its classes, the card, the command line,
and its calibration file checked like every other file of the version."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

import driftline
from core.errors import InputError
from driftline.cli import main
from model_registry.registry import ModelCard, Registry
from tasks.day.inputs import load_model_context
from tasks.edge.calibration_file import CALIBRATION_FILE
from tests import builders


def _reference(n: int = 300, *, seed: int = 0, spelled: bool = True) -> pd.DataFrame:
    """A scored reference of a binary classifier: features, true class, predicted class and
    one probability per class."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    truth = rng.random(n) < p
    names = np.array(["no", "yes"]) if spelled else np.array([0, 1])
    return pd.DataFrame(
        {
            "x": x,
            "region": rng.choice(["n", "s"], n),
            "churned": names[truth.astype(int)],
            "prediction": names[(p >= 0.5).astype(int)],
            f"proba_{names[0]}": 1 - p,
            f"proba_{names[1]}": p,
        }
    )


def test_an_old_card_without_a_task_reads_as_a_regressor() -> None:
    card = builders.card()
    raw = json.loads(card.to_json())
    del raw["task"], raw["classes"]
    read = ModelCard.from_json(json.dumps(raw), source="card.json")
    assert read.task == "regression" and read.classes == () and not read.is_classifier


def test_a_reference_of_classes_and_probabilities_registers_a_classifier_without_a_model(
    tmp_path: Path,
) -> None:
    card = driftline.register_model(
        "churn", None, _reference(), target="churned", registry=str(tmp_path)
    )
    assert (card.task, card.classes) == ("classification", ("no", "yes"))
    assert [f.name for f in card.features] == ["x", "region"]  # the probabilities are outputs
    assert set(vars(card.metrics)) == {
        "accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss", "brier",
    }  # fmt: skip
    again = Registry.open(str(tmp_path)).card("churn")
    assert again == card
    assert "calibration" in again.extra and CALIBRATION_FILE in again.sha256


def test_integer_predictions_beside_probability_columns_are_classes_in_numeric_order(
    tmp_path: Path,
) -> None:
    card = driftline.register_model(
        "churn", None, _reference(spelled=False), target="churned", registry=str(tmp_path)
    )
    assert (card.task, card.classes) == ("classification", ("0", "1"))


def test_a_float_prediction_without_probabilities_stays_a_regressor(tmp_path: Path) -> None:
    reference = builders.batch(120, target="price").to_pandas()
    card = driftline.register_model("toy", None, reference, target="price", registry=str(tmp_path))
    assert card.task == "regression" and card.classes == ()


def test_a_reference_class_outside_the_probability_columns_is_named(tmp_path: Path) -> None:
    reference = _reference()
    reference.loc[3, "churned"] = "maybe"
    with pytest.raises(InputError, match=r"'churned' holds class\(es\) 'maybe' that are not"):
        driftline.register_model("churn", None, reference, target="churned",
                                 registry=str(tmp_path))  # fmt: skip


def test_register_on_the_command_line_takes_task_classification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.linear_model import LogisticRegression

    reference = _reference(400, seed=2)
    model = LogisticRegression().fit(reference[["x"]], reference["churned"])
    joblib.dump(model, tmp_path / "model.joblib")
    reference[["x", "churned"]].to_parquet(tmp_path / "ref.parquet")
    code = main(["--registry", str(tmp_path / "registry"), "register", "--model", "churn",
                 "--artifact", str(tmp_path / "model.joblib"), "--reference",
                 str(tmp_path / "ref.parquet"), "--target", "churned",
                 "--task", "classification"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "a classifier of 2 classes (no, yes)" in out.out
    assert "holdout accuracy" in out.out


def test_a_changed_calibration_file_stops_the_run_before_it_is_read(tmp_path: Path) -> None:
    card = driftline.register_model(
        "churn", None, _reference(), target="churned", registry=str(tmp_path)
    )
    path = tmp_path / "churn" / card.version / CALIBRATION_FILE
    path.write_text(path.read_text().replace('"calibrated": true', '"calibrated": false') + " ")
    with pytest.raises(InputError, match=r"calibration\.json: sha256 .* does not match its card"):
        load_model_context(Registry.open(str(tmp_path)), "churn")

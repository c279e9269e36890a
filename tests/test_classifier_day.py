"""A classifier registered, written and monitored through the Python API on tables that
scikit-learn ships: every pushed metric equals scikit-learn on the day's labelled rows, and
string, integer and boolean classes give the same numbers."""

from __future__ import annotations

import math
import runpy
import shutil
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import driftline
from core.errors import InputError
from model_registry.registry import Registry
from tasks.export.catalogue import RunStamp, metric_families
from tasks.results.day import MonitoringResult

DAY = date(2026, 3, 2)
CLASSIFIER_GAUGES = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss", "brier")


def _pushed(result: MonitoringResult) -> dict[str, dict[tuple[str, ...], float]]:
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in metric_families(result, RunStamp(0.0, 0.0)):
        for sample in family.samples:
            labels = tuple(v for k, v in sorted(sample.labels.items()) if k != "model_version")
            out.setdefault(family.name, {})[labels] = sample.value
    return out


def _dataset(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    loaded = (load_breast_cancer if name == "binary" else load_digits)(as_frame=True)
    return loaded.data, loaded.target.to_numpy()


def _run(
    tmp_path: Path, name: str, spell: dict[int, object] | None
) -> tuple[MonitoringResult, pd.DataFrame, LogisticRegression]:
    """Fit on half the rows, register with a quarter as the reference, monitor the rest as one
    batch day with labels for 90 % of its rows the next day."""
    features, codes = _dataset(name)
    target = np.array([spell[c] for c in codes], dtype=object) if spell else codes
    if spell and all(isinstance(v, bool) for v in spell.values()):
        target = target.astype(bool)
    x_fit, x_rest, y_fit, y_rest = train_test_split(features, target, test_size=0.5, random_state=0)
    x_ref, x_day, y_ref, y_day = train_test_split(x_rest, y_rest, test_size=0.5, random_state=1)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    model.fit(x_fit, y_fit)
    registry, lake = str(tmp_path / "registry"), str(tmp_path / "lake")
    card = driftline.register_model(
        "clf", model, x_ref.assign(label=y_ref), target="label", registry=registry
    )
    assert card.task == "classification"
    batch = x_day.reset_index(drop=True)
    proba = model.predict_proba(batch)
    scored = batch.assign(
        row_id=[f"r{i}" for i in range(len(batch))], prediction=model.predict(batch)
    )
    for i, label in enumerate(card.classes):
        scored[f"proba_{label}"] = proba[:, i]
    driftline.write_batch("clf", DAY, scored, lake=lake, registry=registry)
    labelled = scored.iloc[: int(0.9 * len(scored))]
    labels = pd.DataFrame({"row_id": labelled["row_id"], "label": y_day[: len(labelled)]})
    driftline.write_labels("clf", DAY + timedelta(days=1), labels, lake=lake, registry=registry)
    result = driftline.monitor_day("clf", DAY, lake=lake, registry=registry)
    return result, labelled.assign(label=labels["label"].to_numpy()), model


def _sklearn(labelled: pd.DataFrame, model: LogisticRegression) -> dict[str, float]:
    classes = list(model.classes_)
    proba = labelled[[f"proba_{c}" for c in _spelled(classes)]].to_numpy()
    truth, predicted = labelled["label"].to_numpy(), labelled["prediction"].to_numpy()
    binary = len(classes) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auc = (
            skm.roc_auc_score(truth, proba[:, 1])
            if binary
            else skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
        )
        brier = (
            skm.brier_score_loss(truth, proba[:, 1], pos_label=classes[1])
            if binary
            else skm.brier_score_loss(truth, proba, labels=classes)
        )
        return {
            "accuracy": skm.accuracy_score(truth, predicted),
            "balanced_accuracy": skm.balanced_accuracy_score(truth, predicted),
            "f1_macro": skm.f1_score(truth, predicted, average="macro"),
            "roc_auc": auc,
            "log_loss": skm.log_loss(truth, proba, labels=classes),
            "brier": brier,
        }


def _spelled(classes: list[object]) -> list[str]:
    return [str(c).lower() if isinstance(c, bool | np.bool_) else str(c) for c in classes]


@pytest.mark.parametrize(
    ("name", "spell"),
    [
        ("binary", None),
        ("binary", {0: "malignant", 1: "benign"}),
        ("binary", {0: False, 1: True}),
        ("multiclass", None),
        ("multiclass", {i: f"digit-{chr(97 + i)}" for i in range(10)}),
    ],
)
def test_every_pushed_metric_equals_sklearn_on_the_days_labelled_rows(
    tmp_path: Path, name: str, spell: dict[int, object] | None
) -> None:
    result, labelled, model = _run(tmp_path, name, spell)
    pushed = _pushed(result)
    expected = _sklearn(labelled, model)
    for metric in CLASSIFIER_GAUGES:
        assert pushed[f"ml_model_{metric}"][()] == pytest.approx(expected[metric], abs=1e-12), (
            metric
        )
        assert math.isfinite(pushed[f"ml_model_baseline_{metric}"][()])
    for metric in ("mae", "rmse", "mape", "r2", "estimated_mae", "baseline_mae"):
        assert f"ml_model_{metric}" not in pushed  # a classifier pushes its own, not these
    shares = pushed["ml_prediction_class_share"]
    assert set(shares) <= {(c,) for c in _spelled(list(model.classes_))}
    assert sum(shares.values()) == pytest.approx(1.0)
    for end in ("", "_lower", "_upper"):
        assert 0 <= pushed[f"ml_model_estimated_accuracy{end}"][()] <= 1
        assert 0 <= pushed[f"ml_model_estimated_roc_auc{end}"][()] <= 1
    assert pushed["ml_prediction_drift_detected"][()] in (0.0, 1.0)
    assert result.prediction is not None and result.prediction.test == "chi2"
    assert {d.feature for d in result.probabilities} == {
        f"proba_{c}" for c in _spelled(list(model.classes_))
    }


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_string_integer_and_boolean_classes_give_identical_numbers(
    tmp_path: Path, name: str
) -> None:
    spellings: list[dict[int, object] | None] = [None, {i: f"c-{chr(97 + i)}" for i in range(10)}]
    if name == "binary":
        spellings.append({0: False, 1: True})
    runs = [_run(tmp_path / str(i), name, s)[0] for i, s in enumerate(spellings)]
    numbers = [
        {k: v for k, v in _pushed(r).items() if k.startswith("ml_model_") or "drift" in k}
        for r in runs
    ]
    for other in numbers[1:]:
        assert other.keys() == numbers[0].keys()
        for key, samples in numbers[0].items():
            assert list(other[key].values()) == pytest.approx(list(samples.values()), abs=1e-12)


def test_a_batch_with_a_class_the_model_never_saw_is_refused_naming_it(tmp_path: Path) -> None:
    _run(tmp_path, "binary", {0: "no", 1: "yes"})
    registry, lake = str(tmp_path / "registry"), str(tmp_path / "lake")
    card = Registry.open(registry).card("clf")
    reference = Registry.open(registry).load_reference(card).to_pandas()
    batch = reference.drop(columns=["label", "batch_date"], errors="ignore").head(5)
    batch = batch.assign(row_id=[f"x{i}" for i in range(5)], prediction="maybe")
    with pytest.raises(InputError, match=r"column 'prediction' holds class\(es\) 'maybe' unseen"):
        driftline.write_batch("clf", DAY, batch, lake=lake, registry=registry)
    with pytest.raises(InputError, match=r"lacks column 'proba_yes'"):
        driftline.write_batch(
            "clf", DAY, batch.drop(columns="proba_yes"), lake=lake, registry=registry
        )
    labels = pd.DataFrame({"row_id": ["r0"], "label": ["perhaps"]})
    with pytest.raises(InputError, match=r"column 'label' holds class\(es\) 'perhaps' unseen"):
        driftline.write_labels("clf", DAY, labels, lake=lake, registry=registry)


def test_the_contracts_classifier_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("MODEL_REGISTRY_URI", str(tmp_path / "registry"))
    example = Path(__file__).parents[1] / "docs" / "examples" / "classifier.py"
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "classification ('0', '1')" in out
    assert "ClassificationMetrics(accuracy=" in out
    contract = (Path(__file__).parents[1] / "docs" / "contract.md").read_text()
    assert example.read_text().split('"""', 2)[2].strip() in contract


def test_the_demo_classifier_is_simulated_monitored_and_backfilled_to_the_same_bytes(
    tmp_path: Path,
) -> None:
    """The demo's classifier: days simulated with a covariate shift, monitored one by one as
    the nightly run does; the backfill's engine writes the same result.json for a day."""
    from core.settings import load_settings
    from data_lake.lake import Lake
    from driftline import commands
    from tasks.day.backfill import replay, write_replayed
    from tasks.day.inputs import load_model_context, read_window

    once, replayed, registry = tmp_path / "once", tmp_path / "replayed", tmp_path / "registry"
    settings = load_settings(
        {"DATA_LAKE_URI": str(once), "MODEL_REGISTRY_URI": str(registry)}, push=False
    )
    card = commands.train_classifier(settings, model="tumours")
    assert card.task == "classification" and card.classes == ("0", "1")
    start = DAY - timedelta(days=9)
    shift = start + timedelta(days=5)
    commands.simulate(settings, model="tumours", start=start, days=10, rows_per_day=300,
                      scenario="data-drift", seed=1, drift_start=shift)  # fmt: skip
    shutil.copytree(once, replayed)
    results = [
        driftline.monitor_day(
            "tumours", start + timedelta(days=i), lake=str(once), registry=str(registry)
        )
        for i in range(10)
    ]
    assert all(r.class_estimate is not None for r in results)
    labelled = [r for r in results if r.current_performance is not None]
    assert labelled, "labels arrive within days: some batch reaches the coverage"
    assert results[-1].prediction is not None and results[-1].prediction.test == "chi2"
    # the covariate shift moves the predicted classes: larger tumours are more often malignant
    assert results[-1].class_shares["0"] > results[0].class_shares["0"]

    day = start + timedelta(days=7)
    lake = Lake.open(str(replayed))
    context = load_model_context(Registry.open(str(registry)), "tumours")
    window = read_window(lake, context.card, day - timedelta(days=1), day, window_days=30)
    (outcome,) = write_replayed(lake, [replay(lake, context, window, day, settings)], settings)
    assert outcome.result == results[7]
    ours = Lake.open(str(once))
    assert ours.read_bytes(ours.result_path("tumours", day)) == lake.read_bytes(
        lake.result_path("tumours", day)
    )
    report = ours.read_bytes(ours.report_path("tumours", start + timedelta(days=9)))
    assert report is not None
    text = report.decode()
    assert "predicted classes: 0 " in text and "calibration" in text
    assert "estimated accuracy" in text
    assert 'alt="Performance window"' in text  # accuracy, ROC AUC and the reliability diagram


def test_a_classifiers_result_json_reads_back_to_the_same_bytes(tmp_path: Path) -> None:
    from tasks.results.day import from_json, to_json

    result, _, _ = _run(tmp_path, "multiclass", None)
    payload = to_json(result)
    again = from_json(payload)
    assert to_json(again) == payload
    assert again.class_estimate == result.class_estimate
    assert again.calibration == result.calibration
    assert again.class_shares == result.class_shares

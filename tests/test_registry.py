"""The model registry: immutable versions, an alias, and hashes checked before unpickling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError
from model_registry.registry import Registry


def test_train_registers_a_complete_card_and_points_production_at_it(diamonds_registry: Path):
    registry = Registry.open(str(diamonds_registry))
    card = registry.card("diamonds-price")
    assert card.version == "v1"
    assert registry.aliases("diamonds-price") == {"production": "v1"}
    assert card.target == "price"
    kinds = {f.name: f.kind for f in card.features}
    assert kinds == {
        "carat": "numeric", "cut": "categorical", "color": "categorical",
        "clarity": "categorical", "depth": "numeric", "table": "numeric",
        "x": "numeric", "y": "numeric", "z": "numeric",
    }  # fmt: skip
    assert dict(card.features[1].__dict__)["categories"] == (
        "Fair", "Good", "Ideal", "Premium", "Very Good",
    )  # fmt: skip
    assert set(card.sha256) >= {"model.joblib", "reference.parquet"}
    assert 0.95 < card.metrics.r2 < 1 and 100 < card.metrics.mae < 600
    assert {"scikit-learn", "numpy", "python"} <= set(card.libraries)


def test_reference_holds_out_of_sample_features_target_and_prediction(diamonds_registry: Path):
    registry = Registry.open(str(diamonds_registry))
    reference = registry.load_reference(registry.card("diamonds-price"))
    assert reference.column_names[-2:] == ["price", "prediction"]
    assert 13_000 < reference.num_rows < 14_000  # the 25 % not used for fitting


def test_a_tampered_model_file_is_refused_before_unpickling(tmp_path: Path, diamonds_registry):
    import shutil

    root = tmp_path / "registry"
    shutil.copytree(diamonds_registry, root)
    model_file = root / "diamonds-price" / "v1" / "model.joblib"
    # a pickle that would run code if it were ever loaded
    model_file.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    with pytest.raises(InputError) as err:
        Registry.open(str(root)).load("diamonds-price")
    assert str(model_file) in str(err.value)
    assert "does not match its card" in str(err.value)
    assert "driftline register" in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_versions_are_immutable_and_the_alias_moves(tmp_path: Path, diamonds_registry: Path):
    import shutil

    root = tmp_path / "registry"
    shutil.copytree(diamonds_registry, root)
    registry = Registry.open(str(root))
    first = registry.card("diamonds-price", "v1")
    second = registry.register(
        model="diamonds-price", estimator_bytes=b"x", reference_bytes=b"y", target="price",
        features=first.features, metrics=first.metrics, libraries={},
    )  # fmt: skip
    assert second.version == "v2"
    assert registry.versions("diamonds-price") == ["v1", "v2"]
    assert registry.resolve("diamonds-price") == "v2"
    card_v1 = json.loads((root / "diamonds-price" / "v1" / "card.json").read_text())
    assert card_v1["sha256"] == dict(first.sha256)


def test_unknown_model_says_how_to_get_one(tmp_path: Path):
    with pytest.raises(InputError, match=r"run `driftline train` or `driftline register` first"):
        Registry.open(str(tmp_path)).card("nope")


@pytest.mark.parametrize("name", ["../etc", "a b", "", "x" * 200, 'q"}'])
def test_model_names_outside_the_safe_alphabet_are_refused(tmp_path: Path, name: str):
    with pytest.raises(InputError, match="is not allowed"):
        Registry.open(str(tmp_path)).versions(name)

"""A registry version is monitored only while every one of its files matches its card."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from core.errors import InputError
from driftline.cli import main
from model_registry.registry import Registry
from tasks.day.inputs import load_model_context
from tests.conftest import simulated_world

DAY = date(2026, 3, 3)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    return simulated_world(
        tmp_path_factory.mktemp("simulated"),
        diamonds_registry,
        start=date(2026, 3, 1),
        days=3,
        rows_per_day=200,
        seed=5,
    )


@pytest.fixture
def world(simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("DATA_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("MODEL_REGISTRY_URI", str(tmp_path / "registry"))
    monkeypatch.setenv("DRIFTLINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def version_file(root: Path, name: str) -> Path:
    return root / "registry" / "diamonds-price" / "v1" / name


@pytest.mark.prefect
@pytest.mark.parametrize("name", ["model.joblib", "reference.parquet", "profile.arrow"])
def test_a_tampered_file_stops_the_nightly_run_with_nothing_written(
    world: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = version_file(world, name)
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"!")
    code = main(["monitor", "--date", DAY.isoformat(), "--no-push"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert f"{tampered}: sha256" in err and "register the model again" in err
    assert not (world / "lake" / "monitoring").exists()


def test_a_digest_is_remembered_until_the_file_changes_even_with_its_old_mtime(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry.open(str(world / "registry"), cache_dir=world / "cache")
    card = registry.card("diamonds-price")
    hashed: list[object] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(*args: bytes) -> object:
        hashed.append(args)
        return real_sha256(*args)

    monkeypatch.setattr("model_registry.registry.hashlib.sha256", counting_sha256)
    registry.verify(card)
    assert len(hashed) == len(card.sha256)
    Registry.open(str(world / "registry"), cache_dir=world / "cache").verify(card)
    assert len(hashed) == len(card.sha256)  # the next run hashes nothing: the cache answers

    # same length, same mtime: only the ctime tells, and no one can set it back
    model_file = version_file(world, "model.joblib")
    stat = model_file.stat()
    payload = bytearray(model_file.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    model_file.write_bytes(bytes(payload))
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = Registry.open(str(world / "registry"), cache_dir=world / "cache")
    with pytest.raises(InputError, match=r"model\.joblib: sha256 .* does not match its card"):
        load_model_context(again, "diamonds-price")

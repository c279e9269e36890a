"""The disk holding the lake fills up: on a small filesystem of the test's own (a 2 MiB tmpfs
mounted in its tmp dir, unmounted at the end; mounting needs root, as here and in CI, and a
machine where it fails fails the test).

A write that finds no space leaves the previous file as it was and no temporary file behind, and
fails the run at once (exit 1) with one line naming the path, the free space and what to do;
the nightly run's retries do not spin on it. Once space is freed, the next run completes the day.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from core.files import NoSpaceError, write_bytes_atomically
from data_lake.storage import Storage
from driftline.cli import main
from tests.conftest import simulated_world
from tests.pushgateway_recorder import recording_pushgateway

pytestmark = pytest.mark.e2e  # mounts a filesystem of its own

MODEL = "diamonds-price"
START = date(2026, 3, 1)
DAY, OTHER_DAY = date(2026, 3, 2), date(2026, 3, 3)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs in the test's tmp dir, unmounted (and checked to be) when the test ends."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs on {mount}: {done.stderr.strip() or done.returncode}; this test "
            "needs root (CI runs as root)"
        )
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)
            pytest.fail(f"{mount} was still busy at the end of the test (lazily unmounted)")


def fill(mount: Path, *, leave: int) -> Path:
    """Take all but `leave` bytes of the filesystem with one file; return it."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, shutil.disk_usage(mount).free - leave)
    finally:
        os.close(fd)
    assert shutil.disk_usage(mount).free == leave
    return filler


def hidden_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".tmp-*"))


def test_a_write_that_finds_no_space_keeps_the_old_file_and_removes_the_temporary_one(
    small_disk: Path,
) -> None:
    target = small_disk / "lake" / "result.json"
    write_bytes_atomically(target, b'{"old": true}')
    old = target.stat()
    fill(small_disk, leave=4096)

    with pytest.raises(NoSpaceError) as raised:
        write_bytes_atomically(target, b"x" * 100_000)
    message = str(raised.value)
    assert f"no space left on the device to write {target} (" in message
    assert f"free of 2.0 MiB on {target.parent})" in message
    assert (
        "the previous file is unchanged" in message and "free space on that filesystem" in message
    )
    assert "\n" not in message
    assert target.read_bytes() == b'{"old": true}' and target.stat().st_ino == old.st_ino
    assert hidden_files(small_disk) == []

    # the lake's own writes (Parquet through pyarrow) say the same
    storage = Storage.from_uri(str(small_disk / "lake"))
    with pytest.raises(NoSpaceError, match="nothing was written"):
        storage.write_bytes(f"{storage.root}/other/result.json", b"y" * 100_000)
    assert hidden_files(small_disk) == []


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, diamonds_registry: Path) -> Path:
    return simulated_world(tmp_path_factory.mktemp("disk"), diamonds_registry, start=START,
                           days=3, rows_per_day=200, seed=5)  # fmt: skip


@pytest.fixture
def lake_on_small_disk(
    simulated: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The simulated lake on the small disk, its registry beside; the CLI's environment set."""
    lake = small_disk / "lake"
    shutil.copytree(simulated / "lake", lake)
    with recording_pushgateway() as gateway:
        for key, value in {
            "DATA_LAKE_URI": str(lake),
            "MODEL_REGISTRY_URI": str(simulated / "registry"),
            "PUSHGATEWAY_URL": gateway.url,
            "DRIFTLINE_PUSH_RETRY_DELAYS": "0",
        }.items():
            monkeypatch.setenv(key, value)
        yield lake


def day_dir(lake: Path, day: date) -> Path:
    return lake / "monitoring" / f"model={MODEL}" / f"batch_date={day}"


def result_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every attempt to write a result.json, counted below the Prefect task (retries included)."""
    attempts: list[str] = []
    original = Storage.write_bytes

    def counted(self: Storage, path: str, payload: bytes, **kwargs: object) -> None:
        if path.endswith("/result.json"):
            attempts.append(path)
        original(self, path, payload, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Storage, "write_bytes", counted)
    return attempts


@pytest.mark.prefect
def test_a_full_disk_while_the_result_is_written_keeps_the_previous_result_and_fails_once(
    lake_on_small_disk: Path,
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lake = lake_on_small_disk
    result = day_dir(lake, DAY) / "result.json"
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    capsys.readouterr()
    previous, previous_inode = result.read_bytes(), result.stat().st_ino

    # one page left (tmpfs counts whole pages): the day's lock file takes it, the result
    # (another page or more) finds none
    filler = fill(small_disk, leave=4096)
    attempts = result_writes(monkeypatch)
    assert main(["monitor", "--date", DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"driftline: error: no space left on the device to write {result} (")
    assert f"free of 2.0 MiB on {result.parent}); the previous file is unchanged" in err
    assert "free space on that filesystem (or move the data to a larger one), then run" in err
    assert len(attempts) == 1, f"the write was retried on a full disk: {attempts}"
    assert result.read_bytes() == previous and result.stat().st_ino == previous_inode
    assert hidden_files(lake) == [], "no temporary file is left"
    assert not (
        lake / "monitoring" / f"model={MODEL}" / ".locks" / f"batch_date={DAY}.lock"
    ).exists()

    # space freed: the next run completes the day, the same result
    filler.unlink()
    assert main(["monitor", "--date", DAY.isoformat()]) == 0
    assert result.read_bytes() == previous
    assert hidden_files(day_dir(lake, DAY)) == []


@pytest.mark.prefect
def test_a_disk_already_full_fails_the_run_in_one_line_and_the_next_run_completes(
    lake_on_small_disk: Path,
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lake = lake_on_small_disk
    filler = fill(small_disk, leave=0)  # not even the lock file fits
    attempts = result_writes(monkeypatch)
    assert main(["monitor", "--date", OTHER_DAY.isoformat()]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"driftline: error: monitor {MODEL} {OTHER_DAY}: no space left on the device of the "
        "data lake ("
    )
    assert f"0 bytes free of 2.0 MiB on {lake}); no result was written or pushed" in err
    assert "free space there (or move the lake to a larger disk), then run the day again" in err
    assert attempts == []
    assert not (day_dir(lake, OTHER_DAY) / "result.json").exists()

    filler.unlink()
    assert main(["monitor", "--date", OTHER_DAY.isoformat()]) == 0
    assert (day_dir(lake, OTHER_DAY) / "result.json").is_file()
    assert hidden_files(day_dir(lake, OTHER_DAY)) == []

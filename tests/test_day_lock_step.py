"""The nightly run's lock step: a lake that fails while the lock is taken says so in one line."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from core.errors import RunError
from core.settings import load_settings
from data_lake.lake import Lake
from tasks.day import steps

DAY = date(2026, 3, 5)


def test_a_lake_failing_at_the_lock_is_one_attempt_said_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"DATA_LAKE_URI": str(tmp_path / "lake")})

    @contextlib.contextmanager
    def unreachable(self: Lake, *args: object, **kwargs: object) -> Iterator[None]:
        raise OSError(errno.EIO, "Input/output error", "lake/.locks")
        yield

    monkeypatch.setattr(Lake, "day_lock", unreachable)
    ran = False
    with (
        disable_run_logger(),
        pytest.raises(RunError) as err,
        steps.day_lock(settings, "m", DAY),
    ):
        ran = True
    assert not ran
    message = str(err.value)
    assert message.startswith(f"monitor m {DAY}: the day's lock in the data lake could not be")
    assert "Input/output error" in message and "kept failing" not in message


def test_a_full_disk_at_the_lock_is_left_to_name_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"DATA_LAKE_URI": str(tmp_path / "lake")})

    @contextlib.contextmanager
    def full(self: Lake, *args: object, **kwargs: object) -> Iterator[None]:
        raise OSError(errno.ENOSPC, "No space left on device")
        yield

    monkeypatch.setattr(Lake, "day_lock", full)
    with disable_run_logger(), pytest.raises(OSError) as err, steps.day_lock(settings, "m", DAY):
        pass
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, RunError)

"""A month of nightly runs under random faults, then the documented recovery (scripts/chaos.py
--days 30): no day lost, the lake byte for byte and Prometheus' values at each day's timestamp
the same as the month without faults. The 365-day run's figures are in docs/reliability.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.procs import run

pytestmark = [pytest.mark.e2e, pytest.mark.prefect]


@pytest.mark.timeout(2700)
def test_a_month_of_nightly_runs_under_faults_loses_nothing_and_differs_in_nothing(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, "scripts/chaos.py", "--days", "30", "--seed", "2",
            "--fault-rate", "0.5", "--workdir", str(tmp_path / "chaos"), "--json"]  # fmt: skip
    done = run(argv, cwd=REPO, timeout_seconds=2600)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["days"] == 30
    assert figures["faults"] >= 8, figures["faults_by_kind"]
    assert figures["days_recovered"] >= 3, figures
    assert figures["days_lost"] == 0, figures["lost"]
    assert figures["lake_differences"] == 0, figures["lake_difference_list"]
    assert figures["prometheus_differences"] == 0, figures["prometheus_difference_list"]
    # the comparisons compared something: every file, each day's series, the live ones
    assert figures["lake_files_compared"] >= 30 * 3
    assert figures["history_series_compared"] >= 30 * 40
    assert figures["live_series_compared"] >= 40
    assert "ml_monitoring_run_duration_seconds" in figures["excluded"]["history"]
    # the whole run's report is on stdout for a person too
    assert "days lost: 0" in done.stdout and "lake differences: 0" in done.stdout

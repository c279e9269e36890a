"""What the data-quality checks cost at 1M rows; prints one line of JSON.

    .venv/bin/python scripts/bench_quality.py                 # 1M rows, medians of 5
    .venv/bin/python scripts/bench_quality.py --rows 10000000

The workload of scripts/benchmark.py (a 1M-row reference, 10 numeric and 3 categorical features
and the prediction). Each repeat is a fresh process, as a nightly run is: it loads the stored
profile, reads the batch (`read_batch`), runs `drift_report` (which now also keeps each column's
facts for the checks: timed as part of the drift compute) and then the day's quality step
(`tasks.day.quality.quality_of`), timed on its own. Compare the drift compute with
`scripts/benchmark.py --sizes 1000000` run at the commit before the checks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.policy import Policy
from core.settings import DriftRule
from data_lake.lake import Lake
from scripts.bench_workload import DAY, card, write_workload
from tasks.day.inputs import read_batch
from tasks.day.quality import quality_of
from tasks.edge.profile_file import PROFILE_FILE, profile_from_bytes
from tasks.performance.window import PerformanceOutcome
from tasks.quality.expectations import NumericExpectation
from tasks.stats.batch_drift import drift_report, ecdf_facts
from tasks.stats.columns import as_float
from tasks.stats.ecdf import ecdf_of
from tasks.stats.profile import ReferenceProfile


def facts_seconds(profile: ReferenceProfile, table: pa.Table) -> float:
    """What the drift step adds for the checks, timed alone: each numeric column's facts from
    its sorted sample (the categorical facts are the counts the test made anyway)."""
    seconds = 0.0
    for name, expected in profile.expectations.features.items():
        if isinstance(expected, NumericExpectation):
            current, missing = ecdf_of(as_float(table.column(name)))
            started = time.perf_counter()
            ecdf_facts(current, missing, (expected.low, expected.high))
            seconds += time.perf_counter() - started
    return seconds


def run_once(directory: Path) -> dict[str, Any]:
    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY)
    started = time.perf_counter()
    outcome = drift_report(profile, batch.table, DriftRule())
    drifted = time.perf_counter()
    quality = quality_of(
        card(), profile, Policy(), DAY, batch, outcome, PerformanceOutcome((), 0, ())
    )
    checked = time.perf_counter()
    return {
        "compute_seconds": drifted - started,
        "facts_seconds": facts_seconds(profile, batch.table),
        "quality_seconds": checked - drifted,
        "findings": [f"{f.feature} {f.check}" for f in quality.findings],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_workload(directory, args.rows, args.reference_rows, seed=7)
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-m", "scripts.bench_quality", "--child", str(directory)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(args.repeats)
        ]
    print(
        json.dumps(
            {
                "rows": args.rows,
                "compute_seconds": round(statistics.median(r["compute_seconds"] for r in runs), 4),
                "compute_seconds_each": [round(r["compute_seconds"], 4) for r in runs],
                "facts_seconds": round(statistics.median(r["facts_seconds"] for r in runs), 5),
                "quality_seconds": round(statistics.median(r["quality_seconds"] for r in runs), 4),
                "quality_seconds_each": [round(r["quality_seconds"], 4) for r in runs],
                "findings": runs[0]["findings"],
            }
        )
    )


if __name__ == "__main__":
    main()

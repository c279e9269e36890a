"""Where the drift step's CPU goes, step by step, on the peer benchmark's files; prints JSON.

    .venv/bin/python scripts/bench_drift_steps.py                 # 1M x 1M, best of 5
    .venv/bin/python scripts/bench_drift_steps.py --workload DIR  # files bench_peers.py wrote

The workload of scripts/bench_workload.py (a 1M-row reference, a current batch of `--rows`, 10
numeric and 3 categorical features and the prediction), read as a nightly run reads it. Each
column is measured on one thread, each step `--repeats` times in this one process, and the
fastest kept (the steps' own cost, without page faults or the other thread): for a bucketed
numeric column the histogram (`Bucketed`), the reference at the buckets' boundaries
(`BucketGap`: read from the profile when the buckets are the reference's own, else searched), the
buckets the questions need resolved (`resolve`), then D and its point, the
p-value, the sketch and the facts (`rest`); a counted or sorted one whole (`measured`); a
categorical one its counts and test. Milliseconds, summed over the columns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.settings import DriftRule
from data_lake.lake import Lake
from scripts.bench_workload import DAY, card, write_workload
from tasks.day.inputs import read_batch
from tasks.edge.profile_file import PROFILE_FILE, profile_from_bytes
from tasks.stats.batch_drift import bucketings, in_buckets, measured
from tasks.stats.buckets import Bucketed
from tasks.stats.columns import as_float
from tasks.stats.ecdf import sample_of
from tasks.stats.ecdf_gap import BucketGap
from tasks.stats.profile import FeatureProfile, NumericProfile
from tasks.stats.sketches import quantile_positions


def fastest(step: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The smallest CPU seconds of `repeats` calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.process_time()
        result = step()
        best = min(best, time.process_time() - started)
    return best, result


def steps(directory: Path, repeats: int) -> dict[str, Any]:
    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY).table
    totals: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for name, reference in [*profile.features.items(), ("prediction", profile.prediction)]:
        kinds[name], timed = column_steps(name, reference, batch.column(name), repeats)
        for step, seconds in timed.items():
            totals[step] = totals.get(step, 0.0) + seconds
    return {
        "rows": batch.num_rows,
        "columns": kinds,
        "cpu_ms": {k: round(v * 1000, 1) for k, v in totals.items()},
    }


def column_steps(
    name: str, reference: FeatureProfile, column: pa.ChunkedArray, repeats: int
) -> tuple[str, dict[str, float]]:
    """The column's kind and its steps' fastest CPU seconds."""
    rule = DriftRule()
    whole = fastest(lambda: measured(name, reference, column, rule), repeats)[0]
    if not isinstance(reference, NumericProfile):
        return "categorical", {"categorical: counts and chi-square": whole}
    values = as_float(column)
    timed = {"numeric: to float64": fastest(lambda: as_float(column), repeats)[0]}
    if in_buckets(reference.ecdf, values, None, reference.buckets) is None:
        return "counted or sorted", {**timed, "numeric, counted or sorted: all steps": whole}
    # the column as it is: the bucketing pass counts its NaN
    bucketing, starts = next(bucketings(sample_of(values), reference.buckets))
    timed["bucketed: histogram"], current = fastest(lambda: Bucketed(values, bucketing), repeats)
    seconds, search = fastest(lambda: BucketGap(reference.ecdf, current, starts), repeats)
    timed["bucketed: the reference at the boundaries"] = seconds
    asked = current.buckets_of_positions(quantile_positions(current.n))
    needed = np.concatenate([asked, search.needed])
    timed["bucketed: resolving"] = fastest(lambda: current.resolve(needed), repeats)[0]
    timed["bucketed: all steps"] = whole
    return "bucketed", timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workload", type=Path, help="a directory already written (reused)")
    args = parser.parse_args()
    if args.workload is not None and (args.workload / PROFILE_FILE).exists():
        print(json.dumps(steps(args.workload, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.workload or Path(scratch)
        write_workload(directory, args.rows, 1_000_000, 7)
        print(json.dumps(steps(directory, args.repeats)))


if __name__ == "__main__":
    main()

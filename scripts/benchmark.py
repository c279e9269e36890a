"""Benchmark drift compute against scipy per feature; prints one line of JSON.

    .venv/bin/python scripts/benchmark.py                  # 1M and 10M current rows
    .venv/bin/python scripts/benchmark.py --sizes 1000000  # 1M only

Workload (issue 3): a 1M-row reference and a current batch of N rows, 10 numeric and 3
categorical features plus the prediction, written as Parquet in a lake layout. Seven numeric
features are stationary, three are shifted by 0.02, 0.05 and 0.1 sd; one categorical shifts its
proportions, one holds 50 integer codes; two numeric features have 1% missing values.

Each size runs in a fresh process so its peak RSS is its own. There, each of `--repeats` runs
reads the batch with `tasks.monitoring.read_batch` (Parquet + validation) and calls
`drift_report` with the stored profile; the medians are reported. Peak RSS is taken after those
runs, before scipy runs: `ks_2samp` / `chi2_contingency` per feature on the same Arrow columns
(with NaN dropped) and the raw reference rows, timed end to end, median of `--scipy-repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_lake.lake import Lake
from driftline.settings import DriftRule
from model_registry.registry import FeatureSpec, HoldoutMetrics, ModelCard
from tasks.drift_report import drift_report
from tasks.monitoring import read_batch
from tasks.profile import PROFILE_FILE, profile_files, profile_from_bytes

MODEL = "bench"
DAY = date(2026, 3, 2)
NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["cat_str", "cat_shifted", "cat_code"]
SHIFTS_SD = {"num_7": 0.02, "num_8": 0.05, "num_9": 0.1}
WITH_MISSING = ("num_1", "num_4")
CHUNK_ROWS = 1_000_000
GRADES = np.array(["Fair", "Good", "Very Good", "Premium", "Ideal"])


def card() -> ModelCard:
    features = tuple(FeatureSpec(n, "numeric") for n in NUMERIC) + tuple(
        FeatureSpec(c, "categorical") for c in CATEGORICAL
    )
    return ModelCard(
        name=MODEL,
        version="v1",
        created_at="2026-01-01T00:00:00+00:00",
        target="y",
        features=features,
        metrics=HoldoutMetrics(mae=1.0, rmse=1.0, mape=0.1, r2=0.9),
        sha256={},
        libraries={},
    )


def chunk(rows: int, rng: np.random.Generator, *, current: bool, start: int) -> pa.Table:
    """`rows` rows of the workload; `current` applies the shifts."""

    def shift(name: str) -> float:
        return SHIFTS_SD.get(name, 0.0) if current else 0.0

    draws = {
        "num_0": lambda s: rng.normal(s, 1.0, rows),
        "num_1": lambda s: rng.lognormal(s, 0.5, rows),
        "num_2": lambda s: rng.uniform(s, 1.0 + s, rows),
        "num_3": lambda s: rng.poisson(4.0, rows).astype(np.float64) + s,  # heavy ties
        "num_4": lambda s: rng.exponential(1.0, rows) + s,
        "num_5": lambda s: np.round(rng.normal(60.0 + s, 1.5, rows), 1),  # like diamond depth
        "num_6": lambda s: rng.standard_t(5, rows) + s,
        "num_7": lambda s: rng.normal(s, 1.0, rows),
        "num_8": lambda s: rng.normal(10.0 + s * 2.0, 2.0, rows),
        "num_9": lambda s: rng.normal(s, 1.0, rows),
    }
    columns: dict[str, pa.Array] = {}
    if current:
        columns["row_id"] = pa.array([f"r{start + i}" for i in range(rows)])
    for name in NUMERIC:
        values = draws[name](shift(name))
        mask = rng.random(rows) < 0.01 if name in WITH_MISSING else None
        columns[name] = pa.array(values, mask=mask)
    columns["cat_str"] = pa.array(GRADES[rng.choice(5, rows, p=[0.03, 0.09, 0.22, 0.26, 0.4])])
    tilt = [0.05, 0.1, 0.2, 0.25, 0.4] if current else [0.03, 0.09, 0.22, 0.26, 0.4]
    columns["cat_shifted"] = pa.array(GRADES[rng.choice(5, rows, p=tilt)])
    columns["cat_code"] = pa.array(rng.integers(0, 50, rows))
    columns["prediction"] = pa.array(rng.normal(3900.0, 4000.0, rows))
    if current:
        columns["model_version"] = pa.array(["v1"] * rows)
    return pa.table(columns)


def write_workload(directory: Path, rows: int, reference_rows: int, seed: int) -> None:
    """The reference (raw rows and stored profile) and the batch, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    reference = pa.concat_tables(
        [
            chunk(min(CHUNK_ROWS, reference_rows - s), rng, current=False, start=s)
            for s in range(0, reference_rows, CHUNK_ROWS)
        ]
    )
    pq.write_table(reference, directory / "reference.parquet")
    (directory / PROFILE_FILE).write_bytes(profile_files(reference, card())[PROFILE_FILE])
    del reference
    lake = Lake.open(str(directory / "lake"))
    batch_dir = Path(lake.scored_dir(MODEL, DAY))
    batch_dir.mkdir(parents=True)
    writer = None
    for start in range(0, rows, CHUNK_ROWS):
        table = chunk(min(CHUNK_ROWS, rows - start), rng, current=True, start=start)
        writer = writer or pq.ParquetWriter(batch_dir / "part-0.parquet", table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def scipy_per_feature(reference: pa.Table, batch: pa.Table) -> None:
    """What one would write with scipy alone: one test per feature on the two columns."""
    from scipy import stats

    def floats(column: pa.ChunkedArray) -> np.ndarray:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        return values[~np.isnan(values)]

    for name in [*NUMERIC, "prediction"]:
        stats.ks_2samp(floats(reference.column(name)), floats(batch.column(name)))
    for name in CATEGORICAL:
        ref = pc.value_counts(reference.column(name).drop_null())
        cur = pc.value_counts(batch.column(name).drop_null())
        keys = sorted(set(ref.field("values").to_pylist()) | set(cur.field("values").to_pylist()))
        rows = []
        for counts in (ref, cur):
            found = dict(
                zip(
                    counts.field("values").to_pylist(),
                    counts.field("counts").to_pylist(),
                    strict=True,
                )
            )
            rows.append([found.get(k, 0) for k in keys])
        stats.chi2_contingency(np.array(rows))


def measure(directory: Path, repeats: int, scipy_repeats: int) -> dict[str, float]:
    """Runs in a fresh process: driftline first (then peak RSS), scipy after."""
    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    lake, the_card, rule = Lake.open(str(directory / "lake")), card(), DriftRule()
    whole, compute = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        batch = read_batch(lake, the_card, DAY)
        read = time.perf_counter()
        outcome = drift_report(profile, batch.table, rule)
        done = time.perf_counter()
        whole.append(done - started)
        compute.append(done - read)
        rows = batch.table.num_rows
        del batch
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    drifted = [d.feature for d in outcome.features if d.is_drifted]
    reference = pq.read_table(directory / "reference.parquet")
    batch_table = read_batch(lake, the_card, DAY).table
    scipy_times = []
    for _ in range(scipy_repeats):
        started = time.perf_counter()
        scipy_per_feature(reference, batch_table)
        scipy_times.append(time.perf_counter() - started)
    driftline = statistics.median(compute)
    scipy_seconds = statistics.median(scipy_times)
    return {
        "rows": rows,
        "reference_rows": reference.num_rows,
        "driftline_compute_seconds": round(driftline, 4),
        "whole_run_seconds": round(statistics.median(whole), 4),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "scipy_per_feature_seconds": round(scipy_seconds, 4),
        "speedup_vs_scipy": round(scipy_seconds / driftline, 2),
        "repeats": repeats,
        "scipy_repeats": scipy_repeats,
        "drifted": drifted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="current rows, comma-separated")
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scipy-repeats", default="3,1", help="per size; the last one repeats")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.repeats, int(args.scipy_repeats))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    scipy_repeats = [int(s) for s in args.scipy_repeats.split(",")]
    results = []
    for i, rows in enumerate(sizes):
        with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
            write_workload(Path(tmp), rows, args.reference_rows, args.seed)
            repeats_here = scipy_repeats[min(i, len(scipy_repeats) - 1)]
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    tmp,
                    "--repeats",
                    str(args.repeats),
                    "--scipy-repeats",
                    str(repeats_here),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(child.stdout))
    # other work on the machine slows both sides; the load says how much to trust the figures
    summary: dict[str, object] = {
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "runs": results,
    }
    if len(results) > 1:
        first, last = results[0], results[-1]
        summary["compute_time_ratio_largest_vs_smallest"] = round(
            last["driftline_compute_seconds"] / first["driftline_compute_seconds"], 2
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

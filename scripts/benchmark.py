"""Benchmark drift compute against scipy per feature; prints one line of JSON.

    .venv/bin/python scripts/benchmark.py                  # 1M and 10M current rows
    .venv/bin/python scripts/benchmark.py --sizes 1000000  # 1M only

Workload (issue 3): a 1M-row reference and a current batch of N rows, 10 numeric and 3
categorical features plus the prediction, written as Parquet in a lake layout. Seven numeric
features are stationary, three are shifted by 0.02, 0.05 and 0.1 sd; one categorical shifts its
proportions, one holds 50 integer codes; two numeric features have 1% missing values.

Every measured run is a fresh process, as a nightly run is, so its peak RSS is one run's own
(and no allocator keeps memory from an earlier repeat): it loads the stored profile, reads the
batch with `tasks.day.inputs.read_batch` (Parquet + validation) and calls `drift_report`; the
whole run is all three, the compute only the last; the nightly run adds the performance on
80 % of the rows labelled the next day and writes the result to the lake. The
scipy baseline runs in its own processes on the same files: `ks_2samp` / `chi2_contingency` per
feature on the same Arrow columns (NaN dropped) and the raw reference rows, timed end to end.
The pictures (the day's report) are timed on their own: the sketches the drift step keeps for
them (timed alone in another fresh process), and the report drawn with matplotlib, written to
the lake as HTML and rendered as the artifact's Markdown, after the nightly run's work in the
same process; with how far they raise the peak RSS, the HTML's and the artifact's size.
driftline and scipy runs alternate, so both see the same load on the machine. Times are
medians over the repeats; peak RSS is the largest of driftline's runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# imported on first use in a run (scipy by tasks/stats/drift.py, pandas by pyarrow); once per
# process, so not timed as compute here (scripts/bench_commands.py times whole processes)
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.stats  # noqa: F401

from core.settings import DriftRule
from data_lake.lake import Lake
from scripts.bench_workload import CATEGORICAL, DAY, MODEL, NUMERIC, card, write_workload
from tasks.day.engine import assemble
from tasks.day.inputs import ModelContext, read_batch, read_window
from tasks.edge.profile_file import PROFILE_FILE, profile_from_bytes
from tasks.reports import day as reports
from tasks.reports import plots
from tasks.results.day import to_json
from tasks.stats import sketches
from tasks.stats.batch_drift import drift_report
from tasks.stats.columns import as_float, category_counts
from tasks.stats.ecdf import ecdf_of
from tasks.stats.ecdf_gap import ecdf_gap
from tasks.stats.profile import NumericProfile


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


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started.

    Linux's `ru_maxrss` carries over the peak of the process that forked it (here the parent,
    after generating the workload), so the kernel's own high-water mark of this process's
    memory, VmHWM, is read instead where there is one.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_driftline(directory: Path) -> dict[str, Any]:
    """One nightly run's work for the batch, in this (fresh) process."""
    started = time.perf_counter()
    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    loaded = time.perf_counter()
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY)
    read, read_cpu = time.perf_counter(), time.process_time()
    outcome = drift_report(profile, batch.table, DriftRule())
    done, done_cpu = time.perf_counter(), time.process_time()
    batch = batch.without_features()  # as monitor_day does
    # the rest of the nightly run: performance from the labels, the result written to the lake
    lake = Lake.open(str(directory / "lake"))
    window = read_window(lake, card(), DAY, DAY, window_days=30, current=batch.table)
    performance = window.performance(DAY)
    result = assemble(ModelContext(card(), profile), DAY, batch, outcome, performance)
    lake.write_bytes(lake.result_path(MODEL, DAY), to_json(result))
    finished = time.perf_counter()
    # the pictures: the day's report drawn from the sketches the drift step kept (matplotlib
    # imported here, as in the nightly run), written to the lake, and the artifact's Markdown
    peak_before, rss_before, cpu_before = peak_rss_mb(), rss_mb(), time.process_time()
    # first what drawing imports (matplotlib's figure and the SVG and Agg backends), timed on
    # its own: the stack's warm runner has imported it before a run starts (driftline.stack.runner)
    plots._import_figure()
    for module in ("matplotlib.backends.backend_agg", "matplotlib.backends.backend_svg"):
        importlib.import_module(module)
    imported, imported_cpu = time.perf_counter(), time.process_time()
    report = reports.DayReport.draw(result, outcome.sketches, DriftRule())
    page = report.html().encode()
    lake.write_bytes(lake.report_path(MODEL, DAY), page)
    markdown = report.markdown(lake.uri_of(lake.report_path(MODEL, DAY)))
    pictured = time.perf_counter()
    return {
        "report_seconds": pictured - finished,
        "report_cpu_seconds": time.process_time() - cpu_before,
        "report_import_seconds": imported - finished,
        "report_import_cpu_seconds": imported_cpu - cpu_before,
        "report_peak_added_mb": peak_rss_mb() - peak_before,
        "report_rss_added_mb": rss_mb() - rss_before,
        "report_html_bytes": len(page),
        "artifact_markdown_bytes": len(markdown.encode()),
        "rows": batch.table.num_rows,
        "profile_load_seconds": loaded - started,
        "whole_run_seconds": done - started,
        "nightly_run_seconds": finished - started,
        "compute_seconds": done - read,
        # CPU time of all threads: about twice the compute seconds when both cores were free
        "compute_cpu_seconds": done_cpu - read_cpu,
        "peak_rss_mb": peak_rss_mb(),
        "drifted": [d.feature for d in outcome.features if d.is_drifted],
    }


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), 0 where /proc is not there."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_sketches(directory: Path) -> dict[str, Any]:
    """What the drift step adds for the pictures, timed alone: per feature, the count of
    missing values that picks the sort, and the sketch of the two sorted samples (where the
    ECDFs are furthest apart comes with the KS statistic, so it is found before the clock)."""
    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY).table
    seconds = cpu = 0.0
    for name, reference in [*profile.features.items(), ("prediction", profile.prediction)]:
        if isinstance(reference, NumericProfile):
            values = as_float(batch.column(name))
            current = ecdf_of(values)[0]
            gap = ecdf_gap(reference.ecdf, current)
            started, cpu_started = time.perf_counter(), time.process_time()
            int(np.count_nonzero(np.isnan(values)))
            sketches.numeric_sketch(reference.ecdf, current, gap=gap)
        else:
            counts = category_counts(batch.column(name))[0]
            started, cpu_started = time.perf_counter(), time.process_time()
            sketches.categorical_sketch(reference.counts, counts)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
    return {"sketch_seconds": seconds, "sketch_cpu_seconds": cpu}


def run_scipy(directory: Path) -> dict[str, Any]:
    """The scipy baseline on the same files, in this (fresh) process; only the tests are timed."""
    reference = pq.read_table(directory / "reference.parquet")
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY).table
    started = time.perf_counter()
    scipy_per_feature(reference, batch)
    return {"compute_seconds": time.perf_counter() - started}


def child(directory: Path, kind: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(directory), "--kind", kind],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def measure(directory: Path, repeats: int, scipy_repeats: int) -> dict[str, Any]:
    """`repeats` driftline runs and `scipy_repeats` scipy runs, alternating."""
    load_at_start = os.getloadavg()[0]
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    sketches: list[dict[str, Any]] = []
    for i in range(max(repeats, scipy_repeats)):
        if i < repeats:
            ours.append(child(directory, "driftline"))
            sketches.append(child(directory, "sketches"))
        if i < scipy_repeats:
            theirs.append(child(directory, "scipy"))
    compute = statistics.median(r["compute_seconds"] for r in ours)
    scipy_seconds = statistics.median(r["compute_seconds"] for r in theirs)
    return {
        "rows": ours[0]["rows"],
        "reference_rows": pq.ParquetFile(directory / "reference.parquet").metadata.num_rows,
        "driftline_compute_seconds": round(compute, 4),
        "driftline_compute_seconds_each": [round(r["compute_seconds"], 4) for r in ours],
        "driftline_compute_cpu_seconds": round(
            statistics.median(r["compute_cpu_seconds"] for r in ours), 4
        ),
        "driftline_compute_cpu_seconds_each": [round(r["compute_cpu_seconds"], 4) for r in ours],
        "whole_run_seconds": round(statistics.median(r["whole_run_seconds"] for r in ours), 4),
        "nightly_run_seconds": round(statistics.median(r["nightly_run_seconds"] for r in ours), 4),
        "profile_load_seconds": round(
            statistics.median(r["profile_load_seconds"] for r in ours), 4
        ),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in ours), 1),
        "peak_rss_mb_each": [round(r["peak_rss_mb"], 1) for r in ours],
        # the pictures: sketches in the drift step, then the report drawn, written, linked
        "pictures_seconds": round(
            statistics.median(r["sketch_seconds"] for r in sketches)
            + statistics.median(r["report_seconds"] for r in ours),
            4,
        ),
        # the same with matplotlib already imported, as in a run the stack's runner serves
        "pictures_seconds_imports_done": round(
            statistics.median(r["sketch_seconds"] for r in sketches)
            + statistics.median(r["report_seconds"] - r["report_import_seconds"] for r in ours),
            4,
        ),
        "pictures_cpu_seconds_imports_done": round(
            statistics.median(r["sketch_cpu_seconds"] for r in sketches)
            + statistics.median(
                r["report_cpu_seconds"] - r["report_import_cpu_seconds"] for r in ours
            ),
            4,
        ),
        "pictures_import_seconds_each": [round(r["report_import_seconds"], 4) for r in ours],
        "sketch_seconds_each": [round(r["sketch_seconds"], 4) for r in sketches],
        "report_seconds_each": [round(r["report_seconds"], 4) for r in ours],
        # CPU seconds: what the pictures cost whatever else shares the cores
        "pictures_cpu_seconds": round(
            statistics.median(r["sketch_cpu_seconds"] for r in sketches)
            + statistics.median(r["report_cpu_seconds"] for r in ours),
            4,
        ),
        "pictures_peak_added_mb": round(max(r["report_peak_added_mb"] for r in ours), 1),
        "pictures_rss_added_mb": round(max(r["report_rss_added_mb"] for r in ours), 1),
        "report_html_bytes": ours[0]["report_html_bytes"],
        "artifact_markdown_bytes": ours[0]["artifact_markdown_bytes"],
        "scipy_per_feature_seconds": round(scipy_seconds, 4),
        "scipy_per_feature_seconds_each": [round(r["compute_seconds"], 4) for r in theirs],
        "speedup_vs_scipy": round(scipy_seconds / compute, 2),
        "repeats": repeats,
        "scipy_repeats": scipy_repeats,
        # before and after this size's runs; it counts the benchmark's own processes too
        "load_average_1m": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "drifted": ours[0]["drifted"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="current rows, comma-separated")
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scipy-repeats", default="3,1", help="per size; the last one repeats")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--kind", choices=["driftline", "scipy", "sketches"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        run = {"driftline": run_driftline, "scipy": run_scipy, "sketches": run_sketches}
        print(json.dumps(run[args.kind](args.child)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    scipy_repeats = [int(s) for s in args.scipy_repeats.split(",")]
    results = []
    for i, rows in enumerate(sizes):
        # the machine's load from other work, before this benchmark's own processes add to it
        idle_load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
            write_workload(Path(tmp), rows, args.reference_rows, args.seed)
            repeats_here = scipy_repeats[min(i, len(scipy_repeats) - 1)]
            result = measure(Path(tmp), args.repeats, repeats_here)
        results.append({**result, "load_average_1m_before": round(idle_load, 2)})
    # other work on the machine slows both sides; the load says how much to trust the figures
    summary: dict[str, object] = {"cpus": os.cpu_count(), "runs": results}
    if len(results) > 1:
        first, last = results[0], results[-1]
        summary["compute_time_ratio_largest_vs_smallest"] = round(
            last["driftline_compute_seconds"] / first["driftline_compute_seconds"], 2
        )
        # the same in CPU seconds: what the work grows by, whatever else shares the cores
        summary["compute_cpu_ratio_largest_vs_smallest"] = round(
            last["driftline_compute_cpu_seconds"] / first["driftline_compute_cpu_seconds"], 2
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

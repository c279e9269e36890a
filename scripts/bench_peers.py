"""Drift compute against its peers on the same files; prints one line of JSON.

    python3 -m venv var/nannyml && var/nannyml/bin/pip install nannyml==0.13.1 statsmodels
    python3 -m venv var/evidently && var/evidently/bin/pip install evidently==0.7.23 "pandas<3"
    .venv/bin/python scripts/bench_peers.py                      # 1M x 1M, one run of each

The workload is scripts/bench_workload.py's (1M-row reference, current batch of `--rows`; 10
numeric and 3 categorical features plus the prediction = 14 columns), written once. Every
measurement is a fresh process, as a nightly run is, and the tools take turns (driftline, scipy,
NannyML, Evidently, then again for `--repeats` > 1), so all see the same load. Each process first
reads the files and imports its library, untimed; then only what corresponds to driftline's
drift step is timed, wall (`time.perf_counter`) and CPU seconds of all the process's threads
(`time.process_time`):

- driftline (.venv): the stored profile loaded and the batch read and validated
  (`tasks.day.inputs.read_batch`), untimed; timed: `drift_report(profile, batch, DriftRule())`,
  which tests every column (KS, chi-square, Benjamini-Hochberg) and keeps the pictures'
  sketches and the quality checks' facts. Fitting the profile is registration's, not timed.
- scipy (.venv): per column on the raw reference and batch columns (Arrow -> float64, NaN
  dropped): `scipy.stats.ks_2samp` (method "auto") for the 11 numeric ones,
  `chi2_contingency` on the 2 x k table of Arrow `value_counts` for the 3 categorical ones;
  the conversions and the counts are timed with the tests, as one writes it with scipy alone.
- NannyML 0.13.1 (var/nannyml): `UnivariateDriftCalculator(column_names=<14>,
  treat_as_categorical=<3>, continuous_methods=["kolmogorov_smirnov"],
  categorical_methods=["chi2"], chunk_number=1)` on pandas frames. Timed: `calculate(batch)`
  only; `fit(reference)` (registration's counterpart) is timed apart and reported as
  `nannyml_fit_*`. Note that with 10,000 reference rows or more NannyML's KS is an estimate
  (both samples binned on 10,000 equal-width bins between the reference's min and max) and
  gives no p-value; its chi2 is scipy's `chi2_contingency`. Its usage logging (an upload to
  segment.io queued by every call) is off (`NML_DISABLE_USAGE_LOGGING`), as every tool's
  telemetry is: the benchmark makes no network calls.
- Evidently 0.7.23 (var/evidently): `Report([DataDriftPreset(num_method="ks",
  cat_method="chisquare")]).run(current, reference)` on `Dataset.from_pandas` of both frames
  with a `DataDefinition` naming the 11 numeric and 3 categorical columns. Timed: `run` only
  (it has no fit; the `Dataset` wrapping is reported apart as `evidently_dataset_*`). Its KS is
  `scipy.stats.ks_2samp`; its chi-square is a goodness-of-fit `scipy.stats.chisquare` of the
  current counts against the reference's proportions (it offers no contingency test); the
  preset also builds its own widgets, which it cannot be told to skip.

NannyML imports statsmodels without requiring it; Evidently 0.7.23 imports a pandas internal that
pandas 3 removed, hence its pandas 2 (NannyML runs on pandas 3).

Ratios are peer / driftline, wall and CPU ("per CPU second"); above 1 driftline is faster. With
scipy in the run, `ks_largest_difference_vs_scipy` is the largest difference between driftline's
KS D and scipy's over the 11 numeric columns (0 up to rounding: the same answers were timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INTERPRETERS = {
    "driftline": ROOT / ".venv/bin/python",
    "scipy": ROOT / ".venv/bin/python",
    "nannyml": ROOT / "var/nannyml/bin/python",
    "evidently": ROOT / "var/evidently/bin/python",
}
# the workload's columns (scripts/bench_workload.py), repeated so a peer's interpreter, which
# has no driftline installed, needs nothing of the project
NUMERIC = [*(f"num_{i}" for i in range(10)), "prediction"]
CATEGORICAL = ["cat_str", "cat_shifted", "cat_code"]
BATCH = "lake/scored/model=bench/batch_date=2026-03-02/part-0.parquet"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall_seconds": wall - start[0], "cpu_seconds": cpu - start[1]}


def _frames(directory: Path) -> tuple[Any, Any]:
    import pandas as pd

    columns = [*NUMERIC, *CATEGORICAL]
    reference = pd.read_parquet(directory / "reference.parquet", columns=columns)
    return reference, pd.read_parquet(directory / BATCH, columns=columns)


def run_driftline(directory: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import pandas  # noqa: F401  (pyarrow's to_numpy may import it; once per process)
    import scipy.stats  # noqa: F401

    from core.settings import DriftRule
    from data_lake.lake import Lake
    from scripts.bench_workload import DAY, card
    from tasks.day.inputs import read_batch
    from tasks.edge.profile_file import PROFILE_FILE, profile_from_bytes
    from tasks.stats.batch_drift import drift_report

    profile = profile_from_bytes((directory / PROFILE_FILE).read_bytes(), source=PROFILE_FILE)
    batch = read_batch(Lake.open(str(directory / "lake")), card(), DAY).table
    start = _clock()
    outcome = drift_report(profile, batch, DriftRule())
    timed = _since(start)
    tested = [*outcome.features, outcome.prediction]
    return {
        **timed,
        "drifted": [d.feature for d in outcome.features if d.is_drifted],
        "ks": {d.feature: d.score for d in tested if d.feature in NUMERIC},
    }


def run_scipy(directory: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from scipy import stats

    reference = pq.read_table(directory / "reference.parquet")
    batch = pq.read_table(directory / BATCH)

    def floats(column: pa.ChunkedArray) -> np.ndarray:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        return values[~np.isnan(values)]

    def counts(column: pa.ChunkedArray) -> dict[Any, int]:
        tallies = pc.value_counts(column.drop_null())
        keys, n = tallies.field("values").to_pylist(), tallies.field("counts").to_pylist()
        return dict(zip(keys, n, strict=True))

    start = _clock()
    ks = {}
    for name in NUMERIC:
        test = stats.ks_2samp(floats(reference.column(name)), floats(batch.column(name)))
        ks[name] = float(test.statistic)
    for name in CATEGORICAL:
        ref, cur = counts(reference.column(name)), counts(batch.column(name))
        keys = sorted(set(ref) | set(cur))
        stats.chi2_contingency(np.array([[t.get(k, 0) for k in keys] for t in (ref, cur)]))
    return {**_since(start), "ks": ks}


def run_nannyml(directory: Path) -> dict[str, Any]:
    import nannyml

    reference, batch = _frames(directory)
    calculator = nannyml.UnivariateDriftCalculator(
        column_names=[*NUMERIC, *CATEGORICAL],
        treat_as_categorical=CATEGORICAL,
        continuous_methods=["kolmogorov_smirnov"],
        categorical_methods=["chi2"],
        chunk_number=1,
    )
    start = _clock()
    calculator.fit(reference)
    fitted = _since(start)
    start = _clock()
    result = calculator.calculate(batch)
    timed = _since(start)
    alerts = result.filter(period="analysis").to_df()
    return {
        **timed,
        "fit_wall_seconds": fitted["wall_seconds"],
        "fit_cpu_seconds": fitted["cpu_seconds"],
        "columns_out": int(alerts.shape[1]),
    }


def run_evidently(directory: Path) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, batch = _frames(directory)
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    start = _clock()
    current_data = Dataset.from_pandas(batch, data_definition=definition)
    reference_data = Dataset.from_pandas(reference, data_definition=definition)
    wrapped = _since(start)
    report = Report([DataDriftPreset(num_method="ks", cat_method="chisquare")])
    start = _clock()
    snapshot = report.run(current_data=current_data, reference_data=reference_data)
    timed = _since(start)
    return {
        **timed,
        "dataset_wall_seconds": wrapped["wall_seconds"],
        "dataset_cpu_seconds": wrapped["cpu_seconds"],
        "metrics_out": len(snapshot.dict().get("metrics", [])),
    }


RUNS = {
    "driftline": run_driftline,
    "scipy": run_scipy,
    "nannyml": run_nannyml,
    "evidently": run_evidently,
}


def child(directory: Path, kind: str) -> dict[str, Any]:
    """One measurement in a fresh interpreter (the tool's own venv)."""
    # no tool phones home: NannyML's usage logging would otherwise queue an upload to segment.io
    # on every call, whose thread (failing its DNS look-up offline) runs beside the timed call
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "NML_DISABLE_USAGE_LOGGING": "1",
    }
    done = subprocess.run(
        [str(INTERPRETERS[kind]), __file__, "--child", str(directory), "--kind", kind],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per tool (one run: that run), each run's figures, and peer / driftline ratios."""
    out: dict[str, Any] = {}
    for kind, results in runs.items():
        for key in sorted(results[0]):
            values = [r[key] for r in results]
            if all(isinstance(v, float) for v in values):
                out[f"{kind}_{key}"] = round(statistics.median(values), 4)
                if len(values) > 1:
                    out[f"{kind}_{key}_each"] = [round(v, 4) for v in values]
    ours_wall, ours_cpu = out["driftline_wall_seconds"], out["driftline_cpu_seconds"]
    for kind in runs:
        if kind != "driftline":
            out[f"{kind}_vs_driftline_wall"] = round(out[f"{kind}_wall_seconds"] / ours_wall, 2)
            out[f"{kind}_vs_driftline_cpu"] = round(out[f"{kind}_cpu_seconds"] / ours_cpu, 2)
    out["driftline_drifted"] = runs["driftline"][0]["drifted"]
    if "scipy" in runs:  # the same D as scipy's, or the timing compares different answers
        ours, theirs = runs["driftline"][0]["ks"], runs["scipy"][0]["ks"]
        out["ks_largest_difference_vs_scipy"] = max(abs(ours[k] - theirs[k]) for k in theirs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="current rows")
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tools", default=",".join(RUNS), help="comma-separated, in turn order")
    parser.add_argument("--workload", type=Path, help="a directory already written (reused)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=list(RUNS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(RUNS[args.kind](args.child)))
        return
    tools = args.tools.split(",")
    missing = [t for t in tools if not INTERPRETERS[t].exists()]
    if missing:
        parser.error(f"no interpreter for {missing}: create the venvs this docstring names")
    with tempfile.TemporaryDirectory(prefix="driftline-peers-", dir=ROOT / "var") as tmp:
        directory = args.workload or Path(tmp)
        if not (directory / "reference.parquet").exists():
            sys.path.insert(0, str(ROOT))
            from scripts.bench_workload import write_workload

            write_workload(directory, args.rows, args.reference_rows, args.seed)
        load = os.getloadavg()[0]
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        for _ in range(args.repeats):
            for kind in tools:
                runs[kind].append(child(directory, kind))
        result = summary(runs)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "reference_rows": args.reference_rows,
                "columns": len(NUMERIC) + len(CATEGORICAL),
                "cpus": os.cpu_count(),
                "repeats": args.repeats,
                "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()

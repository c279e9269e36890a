"""Time driftline's commands as a user runs them: whole processes, the stack up.

Starts a private Pushgateway, Prefect server and warm runner (driftline.stack.runner) on free
loopback ports and a socket in a temporary state directory, trains the diamonds model into a private
registry, writes a 1,000-row and a 1,000,000-row batch (rows drawn from the reference, 80 %
labelled the next day) and a batch that lacks a feature column, then runs each command
`--repeats` times in a fresh process and prints one line of JSON: the median and every run's
wall seconds, and the CPU seconds of the command's own process (a command the runner serves
runs in the runner's child: its CPU is not counted there). The bars (issue "The operator's day"):
--help within 1 s, monitor within 3 s at 1k rows and 5 s at 1M rows (a regressor and a
classifier), and an unknown model, a missing batch or bad input exiting within 3 s. The
`*_runner_off` cases run the same commands with DRIFTLINE_RUNNER=off: each process imports
everything itself, as without the stack's runner.

    .venv/bin/python scripts/bench_commands.py [--repeats 3]
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
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.settings import load_settings
from data_lake.lake import Lake
from driftline import commands, stack
from driftline.stack.launcher import free_port
from model_registry.registry import Registry
from scripts.bench_classifier_day import write_classifier_day

REPO = Path(__file__).resolve().parents[1]

MODEL = "diamonds-price"
CLASSIFIER = "tumour-classifier"  # logistic regression, 10 features, 2 classes
SMALL, LARGE, BAD, MISSING = (date(2026, 3, d) for d in (1, 2, 3, 9))


def write_batch(lake: Lake, reference: pa.Table, day: date, rows: int, *, drop: str = "") -> None:
    """`rows` reference rows drawn with replacement, as a scored batch, labels the next day."""
    rng = np.random.default_rng(day.toordinal())
    table = reference.take(pa.array(rng.integers(0, reference.num_rows, rows)))
    row_id = pc.binary_join_element_wise(
        day.isoformat(), pa.array(np.arange(rows).astype(str)), "-"
    )
    labels = pa.table({"row_id": row_id, "price": table.column("price")})
    table = table.drop_columns(["price", *([drop] if drop else [])]).add_column(0, "row_id", row_id)
    lake.replace_partition(lake.scored_dir(MODEL, day), "part-0.parquet", table)
    labelled = labels.filter(pa.array(rng.random(rows) < 0.8))
    lake.write_table(f"{lake.labels_dir(MODEL, day + timedelta(days=1))}/labels.parquet", labelled)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str], repeats: int, expect: int) -> dict[str, object]:
    """Wall seconds of each run, and its CPU seconds (user + system of the command's process),
    which other jobs on the machine change much less than the wall time."""
    runs, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), children_cpu()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
        runs.append(time.perf_counter() - started)
        cpu.append(children_cpu() - cpu_started)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    lines = len((done.stdout + done.stderr).strip().splitlines())
    return {"median_seconds": round(statistics.median(runs), 2),
            "seconds": [round(r, 2) for r in runs],
            "median_cpu_seconds": round(statistics.median(cpu), 2),
            "lines_printed": lines}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # as users' machines run (the stack's runner too)
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        root = Path(tmp)
        config = stack.StackConfig(
            state_dir=root / "stack",
            pushgateway_port=free_port(),
            prefect_port=free_port(),
            components=("pushgateway", "prefect", "runner"),
        )
        stack.up(config, timeout_seconds=120)
        try:
            env = {
                **os.environ,
                "DATA_LAKE_URI": str(root / "lake"),
                "MODEL_REGISTRY_URI": str(root / "registry"),
                "DRIFTLINE_CACHE_DIR": str(root / "cache"),
                "PUSHGATEWAY_URL": config.url("pushgateway"),
                "PREFECT_API_URL": f"{config.url('prefect')}/api",
                "DRIFTLINE_STACK_DIR": str(config.state_dir),
            }
            settings = load_settings(env)
            commands.train(settings, model=MODEL)
            reference = Registry.open(settings.model_registry_uri).load(MODEL).reference
            lake = Lake.open(settings.data_lake_uri)
            write_batch(lake, reference, SMALL, 1_000)
            write_batch(lake, reference, LARGE, 1_000_000)
            write_batch(lake, reference, BAD, 1_000, drop="carat")
            write_classifier_day(
                settings.data_lake_uri, settings.model_registry_uri, CLASSIFIER, LARGE, 1_000_000
            )
            driftline = str(Path(sys.executable).parent / "driftline")
            cases = {
                "help": ([driftline, "--help"], 0),
                "monitor_1k_rows": ([driftline, "monitor", "--date", str(SMALL)], 0),
                "monitor_1m_rows": ([driftline, "monitor", "--date", str(LARGE)], 0),
                "monitor_classifier_1m_rows": (
                    [driftline, "monitor", "--model", CLASSIFIER, "--date", str(LARGE)],
                    0,
                ),
                "unknown_model": ([driftline, "monitor", "--model", "nope"], 2),
                "missing_batch": ([driftline, "monitor", "--date", str(MISSING)], 1),
                "bad_input": ([driftline, "monitor", "--date", str(BAD)], 2),
            }
            off = {**env, "DRIFTLINE_RUNNER": "off"}
            # one warm-up: the first run hashes the registry and fills the OS page cache
            subprocess.run(cases["monitor_1k_rows"][0], env=env, capture_output=True, cwd=REPO)
            figures = {
                name: timed(argv, env, args.repeats, expect)
                for name, (argv, expect) in cases.items()
            }
            for name in ("monitor_1k_rows", "monitor_1m_rows", "unknown_model"):
                argv, expect = cases[name]
                figures[f"{name}_runner_off"] = timed(argv, off, args.repeats, expect)
        finally:
            stack.down(config.state_dir)
    load = {"load_average_1m_at_start": load_at_start, "load_average_1m": os.getloadavg()[0]}
    print(json.dumps({"cpus": os.cpu_count(), **load, **figures}))


if __name__ == "__main__":
    main()

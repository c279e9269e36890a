"""The benchmarks' synthetic workload: a reference and a current batch of 10 numeric and 3
categorical features, written as Parquet in 1M-row chunks, with a few shifts planted."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np

# imported on first use in a run (scipy by tasks/stats/drift.py, pandas by pyarrow); once per
# process, so not timed as compute here (scripts/bench_commands.py times whole processes)
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.stats  # noqa: F401

from data_lake.lake import Lake
from model_registry.registry import ModelCard
from tasks.edge.profile_file import PROFILE_FILE, profile_files

MODEL = "bench"
DAY = date(2026, 3, 2)
NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["cat_str", "cat_shifted", "cat_code"]
SHIFTS_SD = {"num_7": 0.02, "num_8": 0.05, "num_9": 0.1}
WITH_MISSING = ("num_1", "num_4")
CHUNK_ROWS = 1_000_000
GRADES = np.array(["Fair", "Good", "Very Good", "Premium", "Ideal"])


def card() -> ModelCard:
    return ModelCard.unregistered(MODEL, target="y", numeric=NUMERIC, categorical=CATEGORICAL)


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
    directory.mkdir(parents=True, exist_ok=True)
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
    # 80 % of the rows labelled the next day: the nightly run computes performance on them
    row_ids = pq.read_table(batch_dir / "part-0.parquet", columns=["row_id"]).column("row_id")
    labelled = row_ids.take(pa.array(np.flatnonzero(rng.uniform(size=rows) < 0.8)))
    labels_dir = Path(lake.labels_dir(MODEL, DAY + timedelta(days=1)))
    labels_dir.mkdir(parents=True)
    pq.write_table(
        pa.table({"row_id": labelled, "y": rng.normal(3900.0, 4000.0, len(labelled))}),
        labels_dir / "part-0.parquet",
    )

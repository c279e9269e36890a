"""Time one classifier batch day of 1,000,000 rows through the nightly run's engine in-process
(`tasks.day.engine.monitor_and_write`: read and validate the batch, drift of 10 features, the
class shares and probabilities, the CBPE estimate, the window with 900,000 labels, result and
report written):

    .venv/bin/python scripts/bench_classifier_day.py

The model is a logistic regression on 10 features of scikit-learn's breast cancer table; the
reference (20,000 rows) and the batch are rows of that table drawn with replacement and jittered
by 5 %. Prints wall and CPU seconds of two runs (the first imports the drawing library).
"""

from __future__ import annotations

import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import driftline
from core.settings import load_settings
from data_lake.lake import Lake
from model_registry.registry import Registry
from tasks.day.engine import load_model_context, monitor_and_write

ROWS = 1_000_000
DAY = date(2026, 3, 2)


def _jittered(table: pd.DataFrame, features: list[str], n: int, seed: int) -> pd.DataFrame:
    rows = table.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    noise = np.random.default_rng(seed).normal(1, 0.05, size=(n, len(features)))
    rows[features] = rows[features] * noise
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lake, registry = str(Path(tmp) / "lake"), str(Path(tmp) / "registry")
        table = load_breast_cancer(as_frame=True).frame
        features = [c for c in table.columns if c != "target"][:10]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(table[features], table["target"])
        reference = _jittered(table, features, 20_000, seed=0)[[*features, "target"]]
        driftline.register_model("big", model, reference, target="target", registry=registry)
        rows = _jittered(table, features, ROWS, seed=1)
        proba = model.predict_proba(rows[features])
        batch = rows[features].assign(
            row_id=[f"r{i}" for i in range(ROWS)],
            prediction=proba.argmax(axis=1),
            proba_0=proba[:, 0],
            proba_1=proba[:, 1],
        )
        driftline.write_batch("big", DAY, batch, lake=lake, registry=registry)
        labelled = int(0.9 * ROWS)
        labels = pd.DataFrame(
            {"row_id": batch["row_id"][:labelled], "target": rows["target"][:labelled]}
        )
        driftline.write_labels("big", DAY + timedelta(days=1), labels, lake=lake,
                               registry=registry)  # fmt: skip
        settings = load_settings({"DATA_LAKE_URI": lake, "MODEL_REGISTRY_URI": registry})
        for run in (1, 2):
            wall, cpu = time.perf_counter(), time.process_time()
            context = load_model_context(Registry.open(registry), "big")
            monitor_and_write(Lake.open(lake), context, DAY, settings)
            print(
                f"run {run}: {time.perf_counter() - wall:.2f} s wall, "
                f"{time.process_time() - cpu:.2f} s CPU"
            )


if __name__ == "__main__":
    main()

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
from tasks.day.engine import monitor_and_write
from tasks.day.inputs import load_model_context

ROWS = 1_000_000
DAY = date(2026, 3, 2)


def _jittered(table: pd.DataFrame, features: list[str], n: int, seed: int) -> pd.DataFrame:
    rows = table.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    noise = np.random.default_rng(seed).normal(1, 0.05, size=(n, len(features)))
    rows[features] = rows[features] * noise
    return rows


def write_classifier_day(lake: str, registry: str, model: str, day: date, rows: int) -> None:
    """Register `model` and write its batch of `rows` rows for `day`, 90 % labelled the next day."""
    table = load_breast_cancer(as_frame=True).frame
    features = [c for c in table.columns if c != "target"][:10]
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    estimator.fit(table[features], table["target"])
    reference = _jittered(table, features, 20_000, seed=0)[[*features, "target"]]
    driftline.register_model(model, estimator, reference, target="target", registry=registry)
    scored = _jittered(table, features, rows, seed=1)
    proba = estimator.predict_proba(scored[features])
    batch = scored[features].assign(
        row_id=[f"r{i}" for i in range(rows)],
        prediction=proba.argmax(axis=1),
        proba_0=proba[:, 0],
        proba_1=proba[:, 1],
    )
    driftline.write_batch(model, day, batch, lake=lake, registry=registry)
    labelled = int(0.9 * rows)
    labels = pd.DataFrame(
        {"row_id": batch["row_id"][:labelled], "target": scored["target"][:labelled]}
    )
    driftline.write_labels(model, day + timedelta(days=1), labels, lake=lake, registry=registry)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lake, registry = str(Path(tmp) / "lake"), str(Path(tmp) / "registry")
        write_classifier_day(lake, registry, "big", DAY, ROWS)
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

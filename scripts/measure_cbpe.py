"""Measure the classifier estimate before labels (CBPE, tasks/performance/cbpe.py) against the
realized accuracy and ROC AUC, beside NannyML's CBPE on the same chunks:

    var/nannyml/bin/python scripts/nannyml_cbpe_chunks.py var/cbpe     # NannyML's side, once
    .venv/bin/python scripts/measure_cbpe.py var/cbpe [--timing]

The data is NannyML's synthetic car loan dataset (binary; its analysis period shifts in its
inputs only), written by the first command with NannyML's estimates per chunk. Here driftline
registers the model from the reference rows with `driftline.register_model` into a temporary
registry (which fits and stores the calibration), loads the calibration as the nightly run does,
and estimates every chunk of the analysis period with the nightly run's function
(`tasks.performance.classified_batch.estimate_batch`). Per metric it prints the mean and largest
|estimate - realized| of driftline and of NannyML, and how often each band covers the realized
value; last, one line of JSON. `--timing` also times the estimate of a batch of 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import driftline
from model_registry.registry import Registry
from tasks.edge.calibration_file import load_calibration
from tasks.performance.classification import class_codes, classification_metrics
from tasks.performance.classified_batch import estimate_batch

TARGET = "repaid"


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["id", "timestamp", "y_pred_proba", "y_pred"]).assign(
        prediction=frame["y_pred"].astype(np.int64),
        proba_0=1.0 - frame["y_pred_proba"],
        proba_1=frame["y_pred_proba"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args()
    reference = pd.read_parquet(args.data / "reference.parquet")
    analysis = pd.read_parquet(args.data / "analysis.parquet")
    theirs = pd.read_csv(args.data / "nannyml_chunks.csv")
    with tempfile.TemporaryDirectory() as tmp:
        card = driftline.register_model(
            "car-loan",
            None,
            _scored(reference).assign(**{TARGET: reference[TARGET].astype(np.int64)}),
            target=TARGET,
            registry=tmp,
        )
        calibration = load_calibration(Registry.open(tmp), card)
    assert calibration is not None
    classes = card.classes
    rows = []
    scored = _scored(analysis)
    for chunk in theirs.itertuples():
        part = scored.iloc[chunk.start_index : chunk.end_index + 1]
        table = pa.Table.from_pandas(part, preserve_index=False)
        table = table.set_column(
            table.column_names.index("prediction"),
            "prediction",
            pa.array(part["prediction"].astype(str)),
        )
        ours = estimate_batch(calibration, classes, table)
        assert ours is not None
        truth = class_codes(pa.array(part[TARGET].astype(np.int64)), classes).astype(np.int64)
        predicted = class_codes(pa.array(part["prediction"]), classes).astype(np.int64)
        realized = classification_metrics(
            truth, predicted, part[["proba_0", "proba_1"]].to_numpy(), classes
        )
        for metric in ("accuracy", "roc_auc"):
            value = getattr(realized, metric)
            rows.append(
                {
                    "chunk": chunk.Index,
                    "metric": metric,
                    "realized": value,
                    "driftline": getattr(ours, metric),
                    "driftline_width": getattr(ours, f"{metric}_upper")
                    - getattr(ours, f"{metric}_lower"),
                    "nannyml_width": getattr(chunk, f"{metric}_upper")
                    - getattr(chunk, f"{metric}_lower"),
                    "driftline_covers": getattr(ours, f"{metric}_lower")
                    <= value
                    <= getattr(ours, f"{metric}_upper"),
                    "nannyml": getattr(chunk, metric),
                    "nannyml_covers": getattr(chunk, f"{metric}_lower")
                    <= value
                    <= getattr(chunk, f"{metric}_upper"),
                }
            )
    table = pd.DataFrame(rows)
    quality = calibration.quality
    summary: dict[str, object] = {
        "chunks": int(table["chunk"].nunique()),
        "chunk_rows": int(theirs["end_index"].iloc[0] - theirs["start_index"].iloc[0] + 1),
        "calibrated": quality.calibrated,
        "ece_raw": round(quality.ece_raw, 4),
        "ece_calibrated": round(quality.ece_calibrated, 4),
    }
    print(f"calibration needed: {quality.calibrated} (ECE out of fold: raw {quality.ece_raw:.4f}, "
          f"calibrated {quality.ece_calibrated:.4f})")  # fmt: skip
    for metric, part in table.groupby("metric"):
        ours = (part["driftline"] - part["realized"]).abs()
        nanny = (part["nannyml"] - part["realized"]).abs()
        line = {
            "driftline_mean_abs_error": round(float(ours.mean()), 4),
            "driftline_max_abs_error": round(float(ours.max()), 4),
            "nannyml_mean_abs_error": round(float(nanny.mean()), 4),
            "nannyml_max_abs_error": round(float(nanny.max()), 4),
            "driftline_band_coverage": round(float(part["driftline_covers"].mean()), 3),
            "nannyml_band_coverage": round(float(part["nannyml_covers"].mean()), 3),
            "driftline_mean_band_width": round(float(part["driftline_width"].mean()), 4),
            "nannyml_mean_band_width": round(float(part["nannyml_width"].mean()), 4),
            "driftline_closer_on_chunks": int((ours <= nanny).sum()),
        }
        summary[str(metric)] = line
        print(f"{metric}: {line}")
    if args.timing:
        summary["estimate_1m_rows_seconds"] = round(_time_million(scored, calibration, classes), 3)
        print(f"estimate of 1,000,000 rows: {summary['estimate_1m_rows_seconds']} s")
    print(json.dumps(summary))


def _time_million(scored: pd.DataFrame, calibration: object, classes: tuple[str, ...]) -> float:
    big = scored.sample(n=1_000_000, replace=True, random_state=0)
    table = pa.Table.from_pandas(big[["prediction", "proba_0", "proba_1"]], preserve_index=False)
    table = table.set_column(0, "prediction", pa.array(big["prediction"].astype(str)))
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        estimate_batch(calibration, classes, table)  # type: ignore[arg-type]
        best = min(best, time.process_time() - started)
    return best


if __name__ == "__main__":
    main()

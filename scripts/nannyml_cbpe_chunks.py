"""NannyML's side of the CBPE comparison (scripts/measure_cbpe.py): run in an environment with
NannyML, never driftline's (NannyML pins its own libraries):

    python3 -m venv var/nannyml && var/nannyml/bin/pip install nannyml==0.13.1 statsmodels
    var/nannyml/bin/python scripts/nannyml_cbpe_chunks.py var/cbpe [--chunk-size 2500]

Writes, under the directory given: `reference.parquet` and `analysis.parquet` of NannyML's
synthetic car loan dataset (binary, shipped in the package with its targets; its analysis
period shifts in its inputs), and `nannyml_chunks.csv`: per analysis chunk, its rows and
NannyML's CBPE estimate of accuracy and ROC AUC with their bounds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nannyml as nml
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--chunk-size", type=int, default=2500)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    reference, analysis, targets = nml.load_synthetic_car_loan_dataset()
    analysis = analysis.merge(targets, on="id")
    reference.to_parquet(args.out / "reference.parquet")
    analysis.to_parquet(args.out / "analysis.parquet")
    estimator = nml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="repaid",
        metrics=["roc_auc", "accuracy"],
        chunk_size=args.chunk_size,
        problem_type="classification_binary",
    )
    estimator.fit(reference)
    frame = estimator.estimate(analysis.drop(columns="repaid")).filter(period="analysis")
    table = frame.to_df()
    rows = pd.DataFrame(
        {
            "start_index": table[("chunk", "start_index")],
            "end_index": table[("chunk", "end_index")],
            "accuracy": table[("accuracy", "value")],
            "accuracy_lower": table[("accuracy", "lower_confidence_boundary")],
            "accuracy_upper": table[("accuracy", "upper_confidence_boundary")],
            "roc_auc": table[("roc_auc", "value")],
            "roc_auc_lower": table[("roc_auc", "lower_confidence_boundary")],
            "roc_auc_upper": table[("roc_auc", "upper_confidence_boundary")],
        }
    )
    rows.to_csv(args.out / "nannyml_chunks.csv", index=False)
    print(f"{len(rows)} chunks written to {args.out / 'nannyml_chunks.csv'}")


if __name__ == "__main__":
    main()

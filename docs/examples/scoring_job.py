"""A nightly scoring job: score the day's rows, hand them and the labels that came to driftline."""

import joblib
import pandas as pd

import driftline

model = joblib.load("model.joblib")  # the fitted pipeline the team registered
rows = pd.read_parquet("rows-2026-03-02.parquet")  # row_id and the model's feature columns
rows["prediction"] = model.predict(rows.drop(columns="row_id"))
driftline.write_batch("house-energy", "2026-03-02", rows)  # refused here if a column is wrong
driftline.write_labels("house-energy", "2026-03-02", pd.read_parquet("labels.parquet"))

"""Register, feed and monitor a classifier (docs/contract.md, "Classifiers"), on a table that
scikit-learn ships. Settings from the environment: DATA_LAKE_URI, MODEL_REGISTRY_URI."""

from datetime import date, timedelta

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import driftline

table = load_breast_cancer(as_frame=True).frame  # 30 numeric features, target 0/1
train, rest = train_test_split(table, test_size=0.6, random_state=0)
reference, rows = train_test_split(rest, test_size=0.5, random_state=0)
features = [c for c in table.columns if c != "target"]
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(train[features], train["target"])
card = driftline.register_model("tumours", model, reference, target="target")
print(card.task, card.classes)  # classification ('0', '1'): inferred from predict_proba

day = date(2026, 3, 2)
batch = rows[features].reset_index(drop=True)
batch["row_id"] = [f"{day}-{i}" for i in range(len(batch))]
batch["prediction"] = model.predict(batch[features])  # the class: integer, string or boolean
for label, column in zip(card.classes, model.predict_proba(batch[features]).T, strict=True):
    batch[f"proba_{label}"] = column  # one probability per class
driftline.write_batch("tumours", day, batch)
labels = batch[["row_id"]].assign(target=rows["target"].to_numpy())  # the true class
driftline.write_labels("tumours", day + timedelta(days=1), labels)
result = driftline.monitor_day("tumours", day)
print("predicted classes:", result.class_shares)
print("estimated accuracy before labels:", result.class_estimate)
print("realized:", result.current_performance)

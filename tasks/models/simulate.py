"""Simulated daily scored batches and delayed labels for a registered model.

Rows are drawn from a pool of labelled rows (by default the model's own out-of-sample reference,
so any registered model can be simulated) and scored by the model. Scenarios, from `drift_start`:
- `data-drift`: covariate shift. Rows are redrawn with weight exp(0.35 z) of the first numeric
  feature (for diamonds, `carat`): larger stones become common, so the size features shift, while
  the true relation from features to target is unchanged.
- `concept-drift`: features as before, the true target is 30 % higher than before for the same
  features (a market moves, the model does not); a classifier's true class is another one, drawn
  at random, for 30 % of the rows.
- `both`: the two together.
Labels arrive 1-7 days after their batch (most within 4 days); 3 % never arrive. Every day has its
own random stream from (seed, day), so the same seed gives the same rows on every rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from data_lake.columns import MODEL_VERSION, PREDICTION, ROW_ID, SCORED_AT
from model_registry.registry import ModelCard
from tasks.performance.classification import class_strings

Scenario = Literal["none", "data-drift", "concept-drift", "both"]
SCENARIOS: tuple[Scenario, ...] = ("none", "data-drift", "concept-drift", "both")
LABEL_DELAY_DAYS = np.arange(1, 8)
LABEL_DELAY_WEIGHTS = np.array([0.30, 0.25, 0.15, 0.12, 0.08, 0.06, 0.04])
LABEL_NEVER_RATIO = 0.03
COVARIATE_TILT = 0.35
CONCEPT_FACTOR = 1.3
CONCEPT_FLIP_RATIO = 0.3  # a classifier's rows whose true class changes under concept drift


@dataclass(frozen=True)
class SimulatedDay:
    batch_date: date
    scored: pd.DataFrame
    labels_by_arrival: dict[date, pd.DataFrame]


def _weights(pool: pd.DataFrame, card: ModelCard, drifting: bool) -> np.ndarray | None:
    if not drifting:
        return None
    numeric = [f.name for f in card.features if f.kind == "numeric"]
    if not numeric:
        return None
    values = pool[numeric[0]].to_numpy(np.float64)
    z = (values - np.nanmean(values)) / (np.nanstd(values) or 1.0)
    w = np.exp(COVARIATE_TILT * np.nan_to_num(z))
    return w / w.sum()


def simulate_day(
    pool: pd.DataFrame,
    card: ModelCard,
    estimator: Any,
    *,
    batch_date: date,
    rows: int,
    scenario: Scenario,
    drift_start: date,
    seed: int,
) -> SimulatedDay:
    """One day's scored batch and the label files it will produce, by arrival day."""
    rng = np.random.default_rng([seed, batch_date.toordinal()])
    drifting = batch_date >= drift_start
    data_drift = drifting and scenario in ("data-drift", "both")
    concept_drift = drifting and scenario in ("concept-drift", "both")
    index = rng.choice(len(pool), size=rows, replace=True, p=_weights(pool, card, data_drift))
    sample = pool.iloc[index].reset_index(drop=True)
    names = card.feature_names
    day_start = datetime.combine(batch_date, time(), UTC)
    row_id = [f"{batch_date.isoformat()}-{i:07d}" for i in range(rows)]
    scored = pd.DataFrame(
        {
            ROW_ID: row_id,
            SCORED_AT: pd.to_datetime(
                day_start.timestamp() + np.sort(rng.uniform(0, 86_400, rows)), unit="s", utc=True
            ),
        }
    )
    for name in names:
        scored[name] = sample[name].to_numpy()
        if isinstance(sample[name].dtype, pd.CategoricalDtype):
            scored[name] = scored[name].astype(sample[name].dtype)
    predictions = estimator.predict(sample[names]) if rows else np.empty(0)
    if card.is_classifier:
        _score_classes(scored, card, estimator, sample[names])
    else:
        scored[PREDICTION] = np.asarray(predictions, dtype=np.float64)
        truth = sample[card.target].to_numpy(np.float64)
        truth = truth * (CONCEPT_FACTOR if concept_drift else 1.0)
    scored[MODEL_VERSION] = card.version
    delay = rng.choice(LABEL_DELAY_DAYS, size=rows, p=LABEL_DELAY_WEIGHTS)
    arrives = rng.uniform(size=rows) >= LABEL_NEVER_RATIO
    if card.is_classifier:
        truth = _true_classes(sample[card.target].to_numpy(), card, rng, concept_drift)
    labels = pd.DataFrame({ROW_ID: row_id, card.target: truth, "delay": delay})[arrives]
    by_arrival = {
        batch_date + timedelta(days=int(d)): group.drop(columns="delay").reset_index(drop=True)
        for d, group in labels.groupby("delay")
    }
    return SimulatedDay(batch_date, scored, by_arrival)


def _score_classes(
    scored: pd.DataFrame, card: ModelCard, estimator: Any, features: pd.DataFrame
) -> None:
    """A classifier's predicted class and one `proba_<class>` column per class."""
    rows = len(features)
    scored[PREDICTION] = estimator.predict(features) if rows else np.empty(0, dtype=object)
    proba = estimator.predict_proba(features) if rows else np.empty((0, len(card.classes)))
    for i, label in enumerate(card.classes):
        scored[f"proba_{label}"] = np.asarray(proba[:, i], dtype=np.float64)


def _true_classes(
    truth: np.ndarray, card: ModelCard, rng: np.random.Generator, concept_drift: bool
) -> np.ndarray:
    """The pool's true classes (in their string form); under concept drift another class for
    CONCEPT_FLIP_RATIO of the rows."""
    labels = np.asarray(class_strings(pa.array(truth.tolist())).to_pylist(), dtype=object)
    if not concept_drift:
        return labels
    flip = rng.uniform(size=truth.size) < CONCEPT_FLIP_RATIO
    shift = rng.integers(1, len(card.classes), size=truth.size)
    codes = np.array([card.classes.index(str(t)) for t in labels], dtype=np.int64)
    others = np.asarray(card.classes, dtype=object)[(codes + shift) % len(card.classes)]
    return np.where(flip, others, labels)

"""What a classifier's validated batch tells before its labels: the share of each predicted
class, and the CBPE estimate (tasks/performance/cbpe.py) of its accuracy and ROC AUC."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from data_lake.columns import PREDICTION
from tasks.performance.cbpe import Calibration, ClassificationEstimate, estimate_classification
from tasks.performance.classification import class_codes, probability_matrix
from tasks.stats.columns import category_counts


def class_shares(table: pa.Table) -> dict[str, float]:
    """Each predicted class's share of the rows with a prediction, by class; empty for a batch
    without one."""
    counts, _ = category_counts(table.column(PREDICTION))
    total = sum(counts.values())
    return {label: n / total for label, n in sorted(counts.items())} if total else {}


def estimate_batch(
    calibration: Calibration | None, classes: Sequence[str], table: pa.Table
) -> ClassificationEstimate | None:
    """The CBPE estimate of a validated batch; None without a calibration or usable rows."""
    if calibration is None or table.num_rows == 0:
        return None
    predicted = class_codes(table.column(PREDICTION), classes)
    return estimate_classification(
        calibration, predicted, probability_matrix(table, classes), n_rows=table.num_rows
    )

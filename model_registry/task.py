"""What a card says of its model's task: a regressor, or a classifier with its classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.errors import InputError

TaskKind = Literal["regression", "classification"]
TASKS: tuple[TaskKind, ...] = ("regression", "classification")


@dataclass(frozen=True)
class ClassifierHoldoutMetrics:
    """A classifier's holdout metrics (tasks/performance/classification.py defines each)."""

    accuracy: float
    balanced_accuracy: float
    f1_macro: float
    roc_auc: float
    log_loss: float
    brier: float


def check_task(
    task: str, classes: Sequence[str], feature_names: Sequence[str], *, source: str
) -> None:
    """A known task; a classifier's classes distinct, two or more, and no feature named like
    their probability columns."""
    if task not in TASKS:
        raise InputError(f"{source}: task {task!r} is not one of {', '.join(TASKS)}; re-register")
    if task == "regression":
        return
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise InputError(
            f"{source}: a classifier needs two or more distinct classes, found "
            f"{list(classes)}; re-register the model"
        )
    clash = sorted({f"proba_{c}" for c in classes} & set(feature_names))
    if clash:
        raise InputError(
            f"{source}: feature(s) {', '.join(clash)} are named like the class probability "
            "columns; rename them and re-register"
        )

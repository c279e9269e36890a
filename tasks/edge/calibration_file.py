"""A classifier's CBPE calibration kept with its version (tasks/performance/cbpe.py fits and
applies it): `calibration.json`, hashed in the card like every other file and read only after
its hash matched. Plain JSON (the isotonic maps' knots): nothing in it is ever unpickled."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from core.errors import InputError
from model_registry.registry import ModelCard, Registry
from tasks.models.classifier import labelled_rows
from tasks.models.training import PreparedModel
from tasks.performance.cbpe import MIN_LABELLED_ROWS, Calibration, fit_calibration

CALIBRATION_FILE = "calibration.json"
EXTRA_KEY = "calibration"  # the card's extra entry: whether it was needed, how well it held


def calibration_files(
    reference: pa.Table, prepared: PreparedModel
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The file to store in a new classifier version, and the card's extra entry for it."""
    truth, predicted, proba = labelled_rows(
        reference, target=prepared.target, classes=prepared.classes
    )
    fitted = fit_calibration(truth, predicted, proba, prepared.classes)
    if fitted is None:
        reason = f"fewer than {MIN_LABELLED_ROWS} labelled reference rows"
        return {}, {EXTRA_KEY: {"skipped": reason}}
    payload = json.dumps(fitted.to_dict(), allow_nan=False).encode()
    entry = {
        "file": CALIBRATION_FILE,
        "method": "confidence-based performance estimation, isotonic calibration per class",
        "quality": fitted.to_dict()["quality"],
    }
    return {CALIBRATION_FILE: payload}, {EXTRA_KEY: entry}


def load_calibration(registry: Registry, card: ModelCard) -> Calibration | None:
    """The version's calibration, once its sha256 matched the card; None for a regressor or a
    classifier registered with too few labelled reference rows."""
    if not card.is_classifier or CALIBRATION_FILE not in card.sha256:
        return None
    source = f"{card.name} {card.version} {CALIBRATION_FILE}"
    payload = registry.read_verified(card, CALIBRATION_FILE)
    try:
        calibration = Calibration.from_dict(json.loads(payload))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{source}: not a valid driftline calibration ({exc!r}); register the model again"
        ) from exc
    if calibration.classes != card.classes:
        raise InputError(
            f"{source}: fitted for classes {list(calibration.classes)}, the card has "
            f"{list(card.classes)}; register the model again"
        )
    return calibration

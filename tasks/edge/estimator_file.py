"""The loss estimator kept with its version: bytes for the registry, and loaded only after the
hash check; fitted on first use and cached for versions registered before estimates existed
(tasks/performance/estimate.py fits and applies it)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import joblib
import pyarrow as pa

from core.errors import InputError
from model_registry.registry import (
    REFERENCE_FILE,
    ModelCard,
    Registry,
    load_joblib_checked,
    sha256_of,
)
from tasks.performance.estimate import (
    ESTIMATOR_FORMAT,
    EXTRA_KEY,
    HOLDOUT_SHARE,
    LOSS_ESTIMATOR_FILE,
    MIN_LABELLED_ROWS,
    READABLE_FORMATS,
    EstimatorAccuracy,
    HasTarget,
    LossEstimator,
    fit_loss_estimator,
)

_CACHE_DIR = ".cache/loss_estimators"


def _sklearn_version() -> str:
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return "unknown"


def estimator_to_bytes(estimator: LossEstimator) -> bytes:
    buffer = io.BytesIO()
    payload = {
        "format": ESTIMATOR_FORMAT,
        "features": [spec.name for spec in estimator.features],
        "absolute": estimator.absolute,
        "squared": estimator.squared,
    }
    joblib.dump(payload, buffer, compress=3)
    return buffer.getvalue()


def _unpacked(
    load: Callable[[], Any], card: ModelCard, accuracy: EstimatorAccuracy, *, source: str
) -> LossEstimator:
    """What `estimator_to_bytes` wrote, unpickled by the registry after its hash check."""
    try:
        loaded = load()
        # the regressors are stored alike in every format; what changed is the card's record
        if not isinstance(loaded, dict) or loaded.get("format") not in READABLE_FORMATS:
            raise ValueError(f"expected a format {ESTIMATOR_FORMAT} loss estimator")
        if loaded["features"] != card.feature_names:
            raise ValueError(f"fitted on features {loaded['features']}")
        if not all(hasattr(loaded[k], "predict") for k in ("absolute", "squared")):
            raise ValueError("a regressor has no predict()")
    except InputError:
        raise  # the hash check: the message says how to re-register
    except Exception as exc:  # joblib raises many types for bytes that are not its own
        raise InputError(
            f"{source}: not a valid driftline loss estimator ({exc!r}); register the model "
            "again with `driftline register` (or `driftline train`)"
        ) from exc
    return LossEstimator(loaded["absolute"], loaded["squared"], card.features, accuracy)


def loss_estimator_files(
    reference: pa.Table, card_like: HasTarget
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The file to store in a new version directory, and the card's extra entry for it."""
    fitted = fit_loss_estimator(reference, card_like.features, card_like.target)
    if fitted is None:
        reason = f"fewer than {MIN_LABELLED_ROWS} labelled reference rows"
        return {}, {EXTRA_KEY: {"skipped": reason}}
    entry = {
        "file": LOSS_ESTIMATOR_FILE,
        "format": ESTIMATOR_FORMAT,
        "method": "direct loss estimation, HistGradientBoostingRegressor on |error| and error^2",
        "holdout_share": HOLDOUT_SHARE,
        "accuracy": fitted.accuracy.to_dict(),
    }
    return {LOSS_ESTIMATOR_FILE: estimator_to_bytes(fitted)}, {EXTRA_KEY: entry}


# loading -------------------------------------------------------------------------------------
def _registered_accuracy(card: ModelCard, source: str) -> EstimatorAccuracy:
    try:
        return EstimatorAccuracy.from_dict(card.extra[EXTRA_KEY]["accuracy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{source}: the card has no valid extra.{EXTRA_KEY}.accuracy ({exc!r}); "
            "register the model again with `driftline register` (or `driftline train`)"
        ) from exc


def _cache_key(card: ModelCard) -> str:
    """The reference's sha256 and everything else the fitted estimator depends on."""
    specs = [[f.name, f.kind, list(f.categories)] for f in card.features]
    reference = card.sha256.get(REFERENCE_FILE, "")
    basis = [ESTIMATOR_FORMAT, reference, card.target, specs, _sklearn_version()]
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()


def _from_cache(
    manifest: bytes | None, payload: bytes | None, card: ModelCard
) -> LossEstimator | None:
    """A cached estimator whose bytes match the sha256 of its manifest; None otherwise."""
    if manifest is None or payload is None:
        return None
    try:
        entry = json.loads(manifest)
        expected = entry["sha256"]
        accuracy = EstimatorAccuracy.from_dict(entry["accuracy"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        # a payload whose hash is not its manifest's is never unpickled: fitted again instead
        return _unpacked(
            lambda: load_joblib_checked(payload, expected, source="cache"),
            card,
            accuracy,
            source="cache",
        )
    except InputError:
        return None


def load_loss_estimator(registry: Registry, card: ModelCard) -> LossEstimator | None:
    """The version's stored estimator (hash-checked before unpickling), or one fitted from its
    reference and cached; None when the version has too few labelled reference rows."""
    return loss_estimator_loader(registry, card)()


def loss_estimator_loader(
    registry: Registry, card: ModelCard
) -> Callable[[], LossEstimator | None]:
    """`load_loss_estimator` in two halves: the stored estimator is read and its sha256 checked
    against the card now (a tampered file is refused here), and unpickled when the returned
    function is first called (unpickling imports scikit-learn). A version without a stored
    estimator is looked up in the cache, or fitted, on that call."""
    entry = card.extra.get(EXTRA_KEY)
    if LOSS_ESTIMATOR_FILE in card.sha256 or (isinstance(entry, dict) and "file" in entry):
        source = f"{card.name} {card.version} {LOSS_ESTIMATOR_FILE}"
        accuracy = _registered_accuracy(card, source)
        payload = registry.read_verified(card, LOSS_ESTIMATOR_FILE)
        expected = card.sha256[LOSS_ESTIMATOR_FILE]
        return lambda: _unpacked(
            lambda: load_joblib_checked(payload, expected, source=source),
            card,
            accuracy,
            source=source,
        )
    if entry is not None:
        return lambda: None  # registered without one: too few labelled rows
    return lambda: _cached_or_fitted(registry, card)


def _cached_or_fitted(registry: Registry, card: ModelCard) -> LossEstimator | None:
    """The estimator of a version registered before estimates existed: from the cache, or
    fitted from its reference and cached."""
    storage = registry.storage
    base = f"{storage.root}/{_CACHE_DIR}/{_cache_key(card)}"
    cached = _from_cache(
        storage.read_bytes(f"{base}.json"), storage.read_bytes(f"{base}.joblib"), card
    )
    if cached is not None:
        return cached
    # read_verified inside load_reference checks the reference against the card's sha256
    fitted = fit_loss_estimator(registry.load_reference(card), card.features, card.target)
    if fitted is None:
        return None
    payload = estimator_to_bytes(fitted)
    manifest = {"sha256": sha256_of(payload), "accuracy": fitted.accuracy.to_dict()}
    # a read-only registry still monitors; it fits the estimator again on each run
    with contextlib.suppress(OSError):
        storage.write_bytes(f"{base}.joblib", payload)
        storage.write_bytes(f"{base}.json", json.dumps(manifest).encode())  # written last
    return fitted


# estimating ----------------------------------------------------------------------------------

"""The reference profile's file beside its version, and how a run loads it.

It is fitted when a version is registered and stored beside it as `profile.arrow`, hashed in
the card like every other file, so a nightly run only reads, sorts and counts the current batch.
Versions registered before profiles existed get one built from their reference on first use and
cached under `<registry root>/.cache/profiles/`, outside the immutable version directory.

`profile.arrow` (an Arrow IPC file) has, per numeric feature and the prediction, one row per
distinct reference value (`value`, `below` = how many reference values are smaller), closed by a
row with value NaN and `below` = the number of values. Its schema metadata (JSON under
`driftline.profile`) holds each feature's kind, row range, missing count and, for categorical
ones, the category counts, and, where the reference's days taught one, the normal range
(`normal`: days and between-day shift, tasks/stats/normal.py); format 1 files have none. From
format 3 it also holds the data-quality expectations learned from the reference rows (`quality`,
tasks/quality/expectations.py); a format 1 or 2 file has them derived from its profile on reading,
without the reference's share of repeated rows. From format 4, a large numeric feature of many
distinct values also has its buckets (tasks/stats/buckets.py `ReferenceBuckets`): `buckets` in
its entry gives where they are placed (`low`, `scale`) and the row range that follows its ECDF,
one row per bucket start and one closing (`value` = where the bucket starts, about; `below` =
how many reference values lie before it). A format 1 to 3 file has none: its batches are
bucketed on their own.
Plain Arrow and JSON: nothing in it is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math

import numpy as np
import pyarrow as pa

from core.errors import InputError
from data_lake.columns import PREDICTION
from model_registry.registry import REFERENCE_FILE, ModelCard, Registry
from tasks.quality.expectations import from_mapping, to_mapping
from tasks.stats.buckets import BUCKETS, NAN_BUCKET, Bucketing, ReferenceBuckets
from tasks.stats.ecdf import Ecdf
from tasks.stats.normal import with_normal_ranges
from tasks.stats.profile import (
    CategoricalProfile,
    FeatureProfile,
    HasFeatures,
    NormalRange,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    expectations_of,
)

PROFILE_FILE = "profile.arrow"
PROFILE_FORMAT = 4
# 1: before normal ranges; 2: before quality; 3: before the reference's buckets
READABLE_FORMATS = (1, 2, 3, PROFILE_FORMAT)
_METADATA_KEY = b"driftline.profile"
# stored buckets are checked against the reference's values at every this many buckets
_BUCKETS_CHECKED_EVERY = 4096
_CACHE_DIR = ".cache/profiles"


# storing -------------------------------------------------------------------------------------
def profile_to_bytes(profile: ReferenceProfile) -> bytes:
    """The profile as one Arrow IPC file (layout in the module docstring)."""
    values: list[np.ndarray] = []
    below: list[np.ndarray] = []
    layout: dict[str, dict[str, object]] = {}
    offset = 0
    entries = [
        *profile.features.items(),
        (PREDICTION, profile.prediction),
        *profile.probabilities.items(),
    ]
    for name, feature in entries:
        if isinstance(feature, NumericProfile):
            # the closing NaN row carries n, so counts_below reads back as a zero-copy slice
            values += [feature.ecdf.values, np.array([np.nan])]
            below.append(feature.ecdf.below_all())
            length = feature.ecdf.values.size + 1
            layout[name] = {"kind": "numeric", "offset": offset, "rows": length}
            offset += length
            if feature.buckets is not None:
                bucketing, starts = feature.buckets.bucketing, feature.buckets.starts
                values.append(_bucket_edges(bucketing))
                below.append(starts)
                layout[name]["buckets"] = {
                    "offset": offset,
                    "rows": starts.size,
                    "low": bucketing.low,
                    "scale": bucketing.scale,
                }
                offset += starts.size
        else:
            layout[name] = {"kind": "categorical", "counts": feature.counts}
        layout[name]["n_missing"] = feature.n_missing
        if name in profile.probabilities:
            layout[name]["probability"] = True
        normal = profile.normal.get(name)
        if normal is not None:
            layout[name]["normal"] = {"days": normal.days, "between": normal.between}
    table = pa.table(
        {
            "value": pa.array(np.concatenate(values), pa.float64()),
            "below": pa.array(np.concatenate(below), pa.int64()),
        }
    )
    meta = {
        "format": PROFILE_FORMAT,
        "n_rows": profile.n_rows,
        "features": layout,
        "quality": to_mapping(profile.expectations),
    }
    table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    # uncompressed Arrow IPC: reading needs no decoding, only one copy of the arrays it keeps
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _bucket_edges(bucketing: Bucketing) -> np.ndarray:
    """Where each bucket starts, about (-inf for bucket 0, the last row the end): the `value`
    of a bucket's row, for a reader of the file; driftline reads only its `below`."""
    edges = bucketing.edges(np.arange(BUCKETS + 1))
    edges[0] = -np.inf
    return edges


def _buckets(entry: dict[str, float], below: np.ndarray, ecdf: Ecdf) -> ReferenceBuckets:
    """A feature's stored buckets, checked: they start at 0, count every value, in order, none
    in the NaN bucket, and where the reference's own values put them (at every 4,096th
    bucket: a file whose buckets map values otherwise than this version does is refused)."""
    start, rows = int(entry["offset"]), int(entry["rows"])
    starts = below[start : start + rows].copy()
    n = ecdf.n
    if rows != BUCKETS + 1 or starts[0] != 0 or starts[-1] != n or (np.diff(starts) < 0).any():
        raise ValueError("bucket counts that do not add up to the reference")
    bucketing = Bucketing(float(entry["low"]), float(entry["scale"]))
    if not (math.isfinite(bucketing.low) and 0.0 < bucketing.scale < math.inf):
        raise ValueError(f"buckets placed at {bucketing}")
    checked = np.r_[np.arange(0, BUCKETS, _BUCKETS_CHECKED_EVERY), NAN_BUCKET]
    if not np.array_equal(starts[checked], ecdf.below(bucketing.starts_of(ecdf.values, checked))):
        raise ValueError("bucket counts that do not match the reference's values")
    return ReferenceBuckets(bucketing, starts)


def _as_numpy(column: pa.ChunkedArray, dtype: type[np.generic]) -> np.ndarray:
    """The column as numpy: one chunk, as written, is a view of the file's bytes (combining
    chunks would copy them). Read off the Arrow buffer rather than with `to_numpy`, which
    imports pandas to check for it, and a run that stops at its batch needs none."""
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if array.null_count or array.type != pa.from_numpy_dtype(np.dtype(dtype)):
        raise ValueError(f"column of {array.type} with {array.null_count} null(s)")
    width = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width
    )


def _ecdf(values: np.ndarray, counts_below: np.ndarray) -> Ecdf:
    """An ECDF of its own memory, without the counts when every value occurs once.

    Copied out so that the file's bytes can go once it is read: in the usual profile most
    features are continuous, their counts are 0, 1, 2, ... and need not stay (at 1M reference
    rows that is 8 MB a feature, 40% of the file).
    """
    distinct = counts_below[-1] == values.size and bool(
        np.array_equal(counts_below, np.arange(values.size + 1))
    )
    return Ecdf(values.copy(), None if distinct else counts_below.copy())


def profile_from_bytes(payload: bytes, *, source: str) -> ReferenceProfile:
    """Read what `profile_to_bytes` wrote; a malformed file is bad input naming `source`."""
    try:
        table = pa.ipc.open_file(pa.py_buffer(payload)).read_all()
        meta = json.loads(table.schema.metadata[_METADATA_KEY])
        if meta["format"] not in READABLE_FORMATS:
            raise ValueError(f"format {meta['format']}, expected one of {READABLE_FORMATS}")
        value = _as_numpy(table.column("value"), np.float64)
        below = _as_numpy(table.column("below"), np.int64)
        parsed: dict[str, FeatureProfile] = {}
        normal: dict[str, NormalRange] = {}
        for name, entry in meta["features"].items():
            n_missing = int(entry["n_missing"])
            if "normal" in entry:
                normal[name] = NormalRange(
                    int(entry["normal"]["days"]), float(entry["normal"]["between"])
                )
            if entry["kind"] == "numeric":
                start, stop = entry["offset"], entry["offset"] + entry["rows"]
                ecdf = _ecdf(value[start : stop - 1], below[start:stop])
                buckets = _buckets(entry["buckets"], below, ecdf) if "buckets" in entry else None
                parsed[name] = NumericProfile(ecdf, n_missing, buckets)
            else:
                counts = {str(k): int(v) for k, v in entry["counts"].items()}
                parsed[name] = CategoricalProfile(counts, n_missing)
        prediction = parsed.pop(PREDICTION)
        probabilities: dict[str, NumericProfile] = {}
        for name, entry in meta["features"].items():
            if entry.get("probability"):
                probability = parsed.pop(name)
                if not isinstance(probability, NumericProfile):
                    raise ValueError(f"the class probability {name!r} is not numeric")
                probabilities[name] = probability
        categories = {k: v.counts for k, v in parsed.items() if isinstance(v, CategoricalProfile)}
        expectations = (
            from_mapping(meta["quality"], categories)
            if "quality" in meta
            else expectations_of(parsed)
        )
        return ReferenceProfile(
            parsed,
            prediction,
            int(meta["n_rows"]),
            normal,
            probabilities=probabilities,
            expectations=expectations,
        )
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        raise InputError(
            f"{source}: not a valid driftline reference profile ({exc!r}); register the model again"
        ) from exc


def profile_files(reference: pa.Table, card_like: HasFeatures) -> dict[str, bytes]:
    """Files to store in a new version directory: the profile fitted on its reference rows."""
    return {PROFILE_FILE: profile_to_bytes(fit_profile(reference, card_like))}


def fit_profile(reference: pa.Table, card_like: HasFeatures) -> ReferenceProfile:
    """The profile of the reference rows, with the normal ranges its days teach."""
    return with_normal_ranges(build_profile(reference, card_like), reference)


# loading -------------------------------------------------------------------------------------
def _matches(profile: ReferenceProfile, card: ModelCard) -> bool:
    """A profile fits a card when it has every feature, with the card's kind."""
    kinds = {"numeric": NumericProfile, "categorical": CategoricalProfile}
    probabilities = {f"proba_{c}" for c in card.classes}
    return set(profile.probabilities) == probabilities and all(
        isinstance(profile.features.get(f.name), kinds[f.kind]) for f in card.features
    )


def _cache_key(card: ModelCard) -> str:
    """The reference's sha256 and what the profile depends on besides it."""
    specs = [[f.name, f.kind] for f in card.features]
    basis = json.dumps([PROFILE_FORMAT, card.sha256[REFERENCE_FILE], specs]).encode()
    return hashlib.sha256(basis).hexdigest()


def load_profile(registry: Registry, card: ModelCard) -> ReferenceProfile:
    """The version's stored profile (hash-checked), or one built from its reference and cached."""
    if PROFILE_FILE in card.sha256:
        source = f"{card.name} {card.version} {PROFILE_FILE}"
        profile = profile_from_bytes(registry.read_verified(card, PROFILE_FILE), source=source)
        if not _matches(profile, card):
            raise InputError(
                f"{source}: does not cover the card's features "
                f"({', '.join(card.feature_names)}); register the model again"
            )
        return profile
    storage = registry.storage
    path = f"{storage.root}/{_CACHE_DIR}/{_cache_key(card)}.arrow"
    cached = storage.read_bytes(path)
    if cached is not None:
        try:
            found = profile_from_bytes(cached, source=storage.uri_of(path))
        except InputError:
            found = None  # a damaged cache entry is rebuilt, not a failed run
        if found is not None and _matches(found, card):
            return found
    # read_verified inside load_reference checks the reference against the card's sha256
    profile = fit_profile(registry.load_reference(card), card)
    # a read-only registry still monitors; it rebuilds the profile on each run
    with contextlib.suppress(OSError):
        storage.write_bytes(path, profile_to_bytes(profile))
    return profile

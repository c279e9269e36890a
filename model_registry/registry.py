"""The model registry (docs/contract.md, "Model registry"): immutable versions, an alias, and
hashes checked first.

Layout under the root: `<model>/<version>/{model.joblib, reference.parquet, card.json}` and
`<model>/aliases.json`. The card is written last, so a version without a card is unfinished and
is never listed. Every file's sha256 is in the card and is checked before a byte is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import InputError, UnknownModelError
from core.names import check_name, is_valid_name
from data_lake.storage import Storage

# the card's types, importable from here as before
from model_registry.card import VERSION_PATTERN
from model_registry.card import FeatureKind as FeatureKind
from model_registry.card import FeatureSpec as FeatureSpec
from model_registry.card import HoldoutMetrics as HoldoutMetrics
from model_registry.card import ModelCard as ModelCard
from model_registry.hash_cache import HashCache
from model_registry.task import ClassifierHoldoutMetrics, TaskKind

MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.parquet"
CARD_FILE = "card.json"
PRODUCTION = "production"


@dataclass(frozen=True)
class LoadedModel:
    card: ModelCard
    estimator: Any
    reference: pa.Table


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def load_joblib_checked(payload: bytes, expected_sha256: str, *, source: str) -> Any:
    """Unpickle `payload` only if its sha256 is the one recorded for it (for files kept outside
    a version, e.g. a cache entry with its hash in a manifest); else an InputError."""
    _check_digest(source, sha256_of(payload), expected_sha256)
    return joblib.load(io.BytesIO(payload))


def _check_digest(shown: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise InputError(
            f"{shown}: sha256 {actual[:12]}... does not match its card ({expected[:12]}...); "
            "the file changed after registration and was not loaded: register the model "
            "again with `driftline register` (or `driftline train`)"
        )


_DIGEST_CHUNK_BYTES = 32 << 20


class Registry:
    def __init__(self, storage: Storage, *, hash_cache: HashCache | None = None) -> None:
        self.storage = storage
        self.hash_cache = hash_cache

    @classmethod
    def open(cls, uri: str, *, cache_dir: Path | None = None) -> Registry:
        """The registry at `uri`; with `cache_dir`, digests of its local files are remembered
        there (model_registry/hash_cache.py) so a large model file is not hashed every run."""
        cache = HashCache(cache_dir / "registry-sha256.json") if cache_dir else None
        return cls(Storage.from_uri(uri), hash_cache=cache)

    def _dir(self, model: str, version: str | None = None) -> str:
        base = f"{self.storage.root}/{check_name('model', model)}"
        return base if version is None else f"{base}/{version}"

    # reading -------------------------------------------------------------------------------
    def versions(self, model: str) -> list[str]:
        """Finished versions, oldest first."""
        found = [
            v
            for v in self.storage.subdirs(self._dir(model))
            if v.startswith("v")
            and v[1:].isdigit()
            and self.storage.exists(f"{self._dir(model, v)}/{CARD_FILE}")
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def models(self) -> list[str]:
        return [
            m
            for m in self.storage.subdirs(self.storage.root)
            if is_valid_name(m) and self.versions(m)
        ]

    def aliases(self, model: str) -> dict[str, str]:
        path = f"{self._dir(model)}/aliases.json"
        raw = self.storage.read_bytes(path)
        if raw is None:
            return {}
        try:
            aliases = json.loads(raw)
            ok = isinstance(aliases, dict) and all(
                isinstance(k, str) and isinstance(v, str) and VERSION_PATTERN.match(v)
                for k, v in aliases.items()
            )
        except ValueError:
            ok = False
        if not ok:
            # a version id becomes a path: never follow one like "../../elsewhere"
            raise InputError(
                f"{self.storage.uri_of(path)}: expected a JSON object of alias -> version id "
                '(e.g. {"production": "v3"}); set the alias again with `driftline register` '
                "or `driftline train`"
            )
        return dict(aliases)

    def resolve(self, model: str, version: str = PRODUCTION) -> str:
        """A version id from a version or an alias."""
        if VERSION_PATTERN.match(version) and version in self.versions(model):
            return version
        aliases = self.aliases(model)
        if version in aliases:
            return aliases[version]
        models = self.models()
        known = ", ".join(models) or "none"
        # a model the registry has never heard of is told apart: it has no group of its own to
        # report a failed night in (tasks/day/failure.py)
        error = InputError if model in models else UnknownModelError
        raise error(
            f"model {model!r} has no version or alias {version!r} in registry "
            f"{self.storage.uri_of(self.storage.root)} (models: {known}); "
            "run `driftline train` or `driftline register` first"
        )

    def card(self, model: str, version: str = PRODUCTION) -> ModelCard:
        resolved = self.resolve(model, version)
        path = f"{self._dir(model, resolved)}/{CARD_FILE}"
        raw = self.storage.read_bytes(path)
        if raw is None:
            raise InputError(f"{self.storage.uri_of(path)}: model card is missing; re-register")
        shown = self.storage.uri_of(path)
        card = ModelCard.from_json(raw.decode(errors="replace"), source=shown)
        if (card.name, card.version) != (model, resolved):
            # the card's name and version pick the files whose hashes it vouches for
            raise InputError(
                f"{shown}: the card is for {card.name} {card.version}, not {model} {resolved}; "
                "re-register the model"
            )
        return card

    def read_verified(self, card: ModelCard, filename: str) -> bytes:
        """A version's file, only if its sha256 matches the card."""
        path = f"{self._dir(card.name, card.version)}/{filename}"
        shown = self.storage.uri_of(path)
        expected = card.sha256.get(filename)
        payload = self.storage.read_bytes(path)
        if expected is None or payload is None:
            raise InputError(f"{shown}: missing from the registry or its card; re-register")
        _check_digest(shown, sha256_of(payload), expected)
        return payload

    def load_joblib(self, card: ModelCard, filename: str) -> Any:
        """A version's joblib file, unpickled only once its sha256 matched the card."""
        return joblib.load(io.BytesIO(self.read_verified(card, filename)))

    def verify(self, card: ModelCard, *, besides: Sequence[str] = ()) -> None:
        """Every file of the version matches its card (those in `besides` are checked when
        they are read), or an InputError names the first that does not. Each file is read once,
        in chunks, and never unpickled."""
        for filename, expected in sorted(card.sha256.items()):
            if filename in besides:
                continue
            path = f"{self._dir(card.name, card.version)}/{filename}"
            shown = self.storage.uri_of(path)
            actual = self._file_digest(path)
            if actual is None:
                raise InputError(f"{shown}: missing from the registry; re-register the model")
            _check_digest(shown, actual, expected)

    def _file_digest(self, path: str) -> str | None:
        local = isinstance(self.storage.fs, pafs.LocalFileSystem)
        cache = self.hash_cache if local else None
        if cache is not None:
            found = cache.get(Path(path))
            if found is not None:
                return found
            identity = cache.identity(Path(path))
        digest = hashlib.sha256()
        try:
            # large reads: on an object store each read is one request
            with self.storage.fs.open_input_file(path) as handle:
                while chunk := handle.read(_DIGEST_CHUNK_BYTES):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except OSError:
            if not self.storage.fs.get_file_info(path).is_file:
                return None  # a folder of that name
            raise
        hexdigest = digest.hexdigest()
        if cache is not None:
            cache.put(Path(path), hexdigest, identity)
        return hexdigest

    def load(self, model: str, version: str = PRODUCTION) -> LoadedModel:
        card = self.card(model, version)
        reference = self.load_reference(card)
        estimator = joblib.load(io.BytesIO(self.read_verified(card, MODEL_FILE)))
        return LoadedModel(card=card, estimator=estimator, reference=reference)

    def load_reference(self, card: ModelCard) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.read_verified(card, REFERENCE_FILE)))

    # writing -------------------------------------------------------------------------------
    def register(
        self,
        *,
        model: str,
        estimator_bytes: bytes | None,
        reference_bytes: bytes,
        target: str,
        features: tuple[FeatureSpec, ...],
        metrics: HoldoutMetrics | ClassifierHoldoutMetrics,
        libraries: Mapping[str, str],
        extra_files: Mapping[str, bytes] | None = None,
        extra: Mapping[str, Any] | None = None,
        alias: str | None = PRODUCTION,
        task: TaskKind = "regression",
        classes: tuple[str, ...] = (),
    ) -> ModelCard:
        """Write a new immutable version; point `alias` at it. Without `estimator_bytes` (a
        reference that holds its predictions) the version has no model file."""
        # count unfinished attempts too: a version id is never reused
        taken = [int(v[1:]) for v in self.storage.subdirs(self._dir(model)) if v[1:].isdigit()]
        version = f"v{max(taken, default=0) + 1}"
        directory = self._dir(model, version)
        files = {
            **({} if estimator_bytes is None else {MODEL_FILE: estimator_bytes}),
            REFERENCE_FILE: reference_bytes,
            **(extra_files or {}),
        }
        for name, payload in files.items():
            self.storage.write_bytes(f"{directory}/{name}", payload)
        card = ModelCard(
            name=model,
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            target=target,
            features=features,
            metrics=metrics,
            sha256={name: sha256_of(payload) for name, payload in files.items()},
            libraries=dict(libraries),
            extra=dict(extra or {}),
            task=task,
            classes=classes,
        )
        self.storage.write_bytes(f"{directory}/{CARD_FILE}", card.to_json().encode())
        if alias:
            self.set_alias(model, alias, version)
        return card

    def set_alias(self, model: str, alias: str, version: str) -> None:
        aliases = self.aliases(model) | {alias: self.resolve(model, version)}
        payload = json.dumps(aliases, indent=2, sort_keys=True).encode()
        self.storage.write_bytes(f"{self._dir(model)}/aliases.json", payload)

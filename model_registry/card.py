"""A model version's card (`card.json`, docs/contract.md, "Model registry"): what was
registered, its features, its holdout metrics and the sha256 of every file of the version."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import InputError
from core.names import check_name
from model_registry.task import ClassifierHoldoutMetrics, TaskKind, check_task

FeatureKind = Literal["numeric", "categorical"]
VERSION_PATTERN = re.compile(r"^v[0-9]{1,9}$")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldoutMetrics:
    mae: float
    rmse: float
    mape: float
    r2: float


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    created_at: str
    target: str
    features: tuple[FeatureSpec, ...]
    metrics: HoldoutMetrics | ClassifierHoldoutMetrics
    sha256: Mapping[str, str]
    libraries: Mapping[str, str]
    extra: Mapping[str, Any] = field(default_factory=dict)
    # a card written before classifiers has neither: a regressor
    task: TaskKind = "regression"
    classes: tuple[str, ...] = ()  # a classifier's, in order; the last is a binary's positive

    @property
    def is_classifier(self) -> bool:
        return self.task == "classification"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def unregistered(
        cls,
        name: str,
        *,
        target: str,
        numeric: Sequence[str],
        categorical: Sequence[str] = (),
        metrics: HoldoutMetrics | None = None,
    ) -> ModelCard:
        """A card for a feature set that is in no registry: the benchmark and the calibration
        measure the statistics with it."""
        return cls(
            name=name,
            version="v1",
            created_at="2026-01-01T00:00:00+00:00",
            target=target,
            features=tuple(FeatureSpec(n, "numeric") for n in numeric)
            + tuple(FeatureSpec(c, "categorical") for c in categorical),
            metrics=metrics or HoldoutMetrics(mae=1.0, rmse=1.0, mape=0.1, r2=0.9),
            sha256={},
            libraries={},
        )

    def to_json(self) -> str:
        payload = asdict(self)
        payload["features"] = [
            {"name": f.name, "kind": f.kind, "categories": list(f.categories)}
            for f in self.features
        ]
        payload["classes"] = list(self.classes)
        return json.dumps(payload, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> ModelCard:
        try:
            raw = json.loads(text)
            task = raw.get("task", "regression")
            holdout = ClassifierHoldoutMetrics if task == "classification" else HoldoutMetrics
            card = cls(
                name=raw["name"],
                version=raw["version"],
                created_at=raw["created_at"],
                target=raw["target"],
                features=tuple(
                    FeatureSpec(f["name"], f["kind"], tuple(f.get("categories") or ()))
                    for f in raw["features"]
                ),
                metrics=holdout(**raw["metrics"]),
                sha256=dict(raw["sha256"]),
                libraries=dict(raw.get("libraries", {})),
                extra=dict(raw.get("extra", {})),
                task=task,
                classes=tuple(str(c) for c in raw.get("classes") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{source}: not a valid model card ({exc!r}); re-register the model"
            ) from exc
        card.check(source=source)
        return card

    def check(self, *, source: str) -> None:
        """Names become paths and label values: refuse what cannot be one."""
        check_name("model", self.name)
        if not VERSION_PATTERN.match(str(self.version)):
            raise InputError(f"{source}: version {self.version!r} is not of the form v1, v2, ...")
        seen: set[str] = set()
        for spec in self.features:
            name = spec.name
            if not isinstance(name, str) or not name or not _is_utf8(name):
                raise InputError(
                    f"{source}: feature name {name!r} is not a non-empty UTF-8 string; "
                    "rename the column and re-register the model"
                )
            if name in seen:
                raise InputError(f"{source}: feature {name!r} is listed twice; re-register")
            if spec.kind not in ("numeric", "categorical"):
                raise InputError(
                    f"{source}: feature {name!r} has kind {spec.kind!r}, "
                    "expected numeric or categorical"
                )
            seen.add(name)
        check_task(self.task, self.classes, self.feature_names, source=source)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a "\ud800" escape in JSON
        return False
    return True

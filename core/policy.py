"""A model's monitoring policy: what is tested, what may alert, and at which thresholds.

A policy is versioned beside the model in the registry (model_registry/policies.py) and changes
without retraining. Every key is optional; what a policy leaves out takes the defaults of
core/settings.py, so a model without a policy runs under `Policy()` (version "default").
docs/contract.md, "Policy", is the user's reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import InputError
from core.settings import DEFAULT_ALERT_THRESHOLDS, MIN_LABEL_COVERAGE, DriftRule

DEFAULT_VERSION = "default"
KEYS = (
    "mute_features",
    "exclude_features",
    "alpha",
    "min_score",
    "features",
    "min_label_coverage",
    "performance_alert_ratio",
    "estimate_alert_ratio",
    "drift_persistence",
    "mute_quality_checks",
)
FEATURE_KEYS = ("alpha", "min_score")
# the data-quality checks a policy may mute (tasks/quality/checks.py), and the name that stands
# for the whole batch in place of a feature (its repeated rows and row count)
QUALITY_CHECKS = (
    "out_of_range",
    "null_burst",
    "scaled_column",
    "swapped_columns",
    "constant_column",
    "unseen_categories",
    "vanished_categories",
    "category_case_changed",
    "duplicated_rows",
    "row_count",
)
BATCH_FEATURE = "_batch"


@dataclass(frozen=True)
class FeatureThresholds:
    """A feature's own alpha or minimum score; None takes the model's."""

    alpha: float | None = None
    min_score: float | None = None


@dataclass(frozen=True)
class Persistence:
    """A feature alerts when drifted on at least `days` of the last `of` batch days."""

    days: int = 1
    of: int = 1


@dataclass(frozen=True)
class Policy:
    version: str = DEFAULT_VERSION
    mute_features: tuple[str, ...] = ()
    exclude_features: tuple[str, ...] = ()
    alpha: float = DriftRule.alpha
    min_score: float = DriftRule.min_score
    features: Mapping[str, FeatureThresholds] = field(default_factory=dict)
    min_label_coverage: float = MIN_LABEL_COVERAGE
    performance_alert_ratio: float = DEFAULT_ALERT_THRESHOLDS.performance_alert_ratio
    estimate_alert_ratio: float = DEFAULT_ALERT_THRESHOLDS.estimate_alert_ratio
    drift_persistence: Persistence = Persistence()
    mute_quality_checks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def drift_rule(self, base: DriftRule) -> DriftRule:
        """The model's rule: its alpha and minimum score on `base` (min_samples stays)."""
        return replace(base, alpha=self.alpha, min_score=self.min_score)

    def feature_rules(self, base: DriftRule) -> dict[str, DriftRule]:
        """The features whose thresholds differ from the model's, with their own rule."""
        model = self.drift_rule(base)
        return {
            name: replace(
                model,
                alpha=model.alpha if own.alpha is None else own.alpha,
                min_score=model.min_score if own.min_score is None else own.min_score,
            )
            for name, own in self.features.items()
        }

    def named_features(self) -> set[str]:
        return {
            *self.mute_features,
            *self.exclude_features,
            *self.features,
            *(f for f in self.mute_quality_checks if f != BATCH_FEATURE),
        }

    def check_features(self, known: Sequence[str], *, source: str) -> None:
        """Every feature the policy names is one of the model's."""
        unknown = sorted(self.named_features() - set(known))
        if unknown:
            raise InputError(
                f"{source}: feature(s) {', '.join(map(repr, unknown))} are not features of the "
                f"model (its features: {', '.join(known)}); fix the name or remove the entry"
            )

    def to_mapping(self) -> dict[str, Any]:
        """The policy as its file holds it (its version is the registry's, not the file's)."""
        return {
            "mute_features": list(self.mute_features),
            "exclude_features": list(self.exclude_features),
            "alpha": self.alpha,
            "min_score": self.min_score,
            "features": {
                name: {k: v for k, v in vars(own).items() if v is not None}
                for name, own in self.features.items()
            },
            "min_label_coverage": self.min_label_coverage,
            "performance_alert_ratio": self.performance_alert_ratio,
            "estimate_alert_ratio": self.estimate_alert_ratio,
            "drift_persistence": vars(self.drift_persistence),
            "mute_quality_checks": {k: list(v) for k, v in self.mute_quality_checks.items()},
        }


def parse_policy(raw: object, *, source: str, version: str = DEFAULT_VERSION) -> Policy:
    """A policy from a file's parsed JSON or YAML; an unknown key or a bad value is an
    InputError naming it and what was expected."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InputError(
            f'{source}: expected a mapping of policy keys (e.g. {{"alpha": 0.01}}), '
            f"found {type(raw).__name__}"
        )
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise InputError(
            f"{source}: unknown policy key(s) {', '.join(map(repr, unknown))} "
            f"(expected any of {', '.join(KEYS)})"
        )
    alpha = _ratio(raw, "alpha", source, DriftRule.alpha, low_open=True)
    min_score = _ratio(raw, "min_score", source, DriftRule.min_score)
    mute = _names(raw, "mute_features", source)
    exclude = _names(raw, "exclude_features", source)
    both = sorted(set(mute) & set(exclude))
    if both:
        raise InputError(
            f"{source}: {', '.join(map(repr, both))} both muted and excluded; "
            "keep each feature in one of mute_features and exclude_features"
        )
    return Policy(
        version=version,
        mute_features=mute,
        exclude_features=exclude,
        alpha=alpha,
        min_score=min_score,
        features=_feature_thresholds(raw.get("features"), source),
        min_label_coverage=_ratio(
            raw, "min_label_coverage", source, MIN_LABEL_COVERAGE, low_open=True
        ),
        performance_alert_ratio=_factor(raw, "performance_alert_ratio", source),
        estimate_alert_ratio=_factor(raw, "estimate_alert_ratio", source),
        drift_persistence=_persistence(raw.get("drift_persistence"), source),
        mute_quality_checks=_quality_mutes(raw.get("mute_quality_checks"), source),
    )


def _number(value: object, where: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where} is {value!r}, expected {expected}")
    return float(value)


def _ratio(
    raw: Mapping[str, Any], key: str, source: str, default: float, *, low_open: bool = False
) -> float:
    """A number in [0, 1] ((0, 1] with `low_open`)."""
    if key not in raw:
        return default
    expected = "a number above 0 and at most 1" if low_open else "a number from 0 to 1"
    value = _number(raw[key], f"{source}: {key}", expected)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise InputError(f"{source}: {key} is {raw[key]!r}, expected {expected}")
    return value


def _factor(raw: Mapping[str, Any], key: str, source: str) -> float:
    if key not in raw:
        return float(getattr(DEFAULT_ALERT_THRESHOLDS, key))
    expected = "a factor of the baseline above 0 (e.g. 1.2)"
    value = _number(raw[key], f"{source}: {key}", expected)
    if value <= 0:
        raise InputError(f"{source}: {key} is {raw[key]!r}, expected {expected}")
    return value


def _names(raw: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{source}: {key} is {value!r}, expected a list of feature names")
    return tuple(dict.fromkeys(value))


def _feature_thresholds(value: object, source: str) -> dict[str, FeatureThresholds]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(
            f"{source}: features is {value!r}, expected a mapping of feature name to "
            '{"alpha": .., "min_score": ..}'
        )
    parsed = {}
    for name, own in value.items():
        where = f"{source}: features.{name}"
        if not isinstance(own, Mapping):
            raise InputError(f"{where} is {own!r}, expected a mapping with alpha and/or min_score")
        unknown = sorted(str(k) for k in own if k not in FEATURE_KEYS)
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
                f"(expected {' or '.join(FEATURE_KEYS)})"
            )
        parsed[str(name)] = FeatureThresholds(
            alpha=_ratio(own, "alpha", where, 0.0, low_open=True) if "alpha" in own else None,
            min_score=_ratio(own, "min_score", where, 0.0) if "min_score" in own else None,
        )
    return parsed


def _persistence(value: object, source: str) -> Persistence:
    if value is None:
        return Persistence()
    where = f"{source}: drift_persistence"
    expected = 'a mapping like {"days": 3, "of": 5} with 1 <= days <= of <= 30'
    if not isinstance(value, Mapping) or set(value) != {"days", "of"}:
        raise InputError(f"{where} is {value!r}, expected {expected}")
    days, of = value["days"], value["of"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (days, of)):
        raise InputError(f"{where} is {value!r}, expected {expected}")
    if not 1 <= days <= of <= 30:
        raise InputError(f"{where} is {value!r}, expected {expected}")
    return Persistence(days, of)


def _quality_mutes(value: object, source: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    expected = 'a mapping of feature name to a list of check names, e.g. {"x": ["out_of_range"]}'
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: mute_quality_checks is {value!r}, expected {expected}")
    parsed = {}
    for name, checks in value.items():
        if not isinstance(checks, list) or not all(isinstance(c, str) and c for c in checks):
            raise InputError(
                f"{source}: mute_quality_checks.{name} is {checks!r}, expected a list of check "
                "names"
            )
        unknown = sorted(c for c in checks if c not in QUALITY_CHECKS)
        if unknown:
            raise InputError(
                f"{source}: mute_quality_checks.{name} names unknown check(s) "
                f"{', '.join(map(repr, unknown))} (expected any of {', '.join(QUALITY_CHECKS)})"
            )
        parsed[str(name)] = tuple(dict.fromkeys(checks))
    return parsed

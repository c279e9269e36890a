"""The nightly checks of one column, or of a pair of columns, against the reference's
expectations: pure functions of the column facts, each returning its findings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.policy import BATCH_FEATURE
from tasks.quality.expectations import (
    CategoricalExpectation,
    ColumnExpectation,
    NumericExpectation,
)
from tasks.quality.facts import CategoricalFacts, ColumnFacts, NumericFacts

Check = Literal[
    "out_of_range",
    "null_burst",
    "unseen_categories",
    "vanished_categories",
    "category_case_changed",
    "scaled_column",
    "swapped_columns",
    "constant_column",
    "duplicated_rows",
    "row_count",
]
NUMERIC_CHECKS: tuple[Check, ...] = (
    "out_of_range",
    "null_burst",
    "scaled_column",
    "swapped_columns",
    "constant_column",
)
CATEGORICAL_CHECKS: tuple[Check, ...] = (
    "null_burst",
    "unseen_categories",
    "vanished_categories",
    "category_case_changed",
    "swapped_columns",
    "constant_column",
)
BATCH_CHECKS: tuple[Check, ...] = ("duplicated_rows", "row_count")
CHECKS: tuple[Check, ...] = (*NUMERIC_CHECKS, *CATEGORICAL_CHECKS[1:4], *BATCH_CHECKS)
BATCH = BATCH_FEATURE  # the `feature` of the checks of the whole batch


@dataclass(frozen=True)
class Finding:
    """One problem found: `value` is the share or count found, `expected` what the reference
    (or the earlier batches) led to expect, `detail` names what it is about."""

    feature: str
    check: Check
    value: float
    expected: str
    detail: str = ""
    muted: bool = False


@dataclass(frozen=True)
class QualityRules:
    """How far from its expectation a column may be before it is a finding."""

    out_of_range_share: float = 0.002  # and 5x the reference's own share outside its range
    null_increase: float = 0.02  # null share above the reference's by more than this...
    null_z: float = 6.0  # ...and by more than this many binomial standard errors
    new_category_share: float = 0.001
    vanished_min_expected: float = 15.0  # a category absent by chance: below e^-15
    constant_chance: float = 1e-6  # a constant batch at most this likely from the reference
    scale_tolerance: float = 0.3  # in log10: 10x means a ratio between 5 and 20
    scale_other: float = 2.0  # a factor not a power of ten, at least this (or 1/this)...
    scale_agreement: float = 0.08  # ...on which spread and median agree within 20%
    swap_match: float = 0.25  # quantiles within this share of the other column's spread
    duplicated_share: float = 0.002  # above the reference's own share of repeated rows
    row_count_min_days: int = 3  # earlier batches before the row count is checked
    row_count_weekly_days: int = 14  # ...and before its weekday pattern is
    row_count_z: float = 4.0  # robust standard deviations of the weekday residuals
    row_count_min_band: float = 0.2  # log of the band's half width: never tighter than +-22%
    row_count_warmup_factor: float = 2.0  # before the weekly pattern is learned


def percent(share: float) -> str:
    return f"{share:.2%}" if share < 0.01 else f"{share:.1%}"


def _spread(shape: tuple[float, ...]) -> float:
    """The 10%..90% distance, or the scale of the median for a column that hardly varies."""
    return (shape[-1] - shape[0]) or abs(shape[2]) or 1.0


def numeric_findings(
    name: str, e: NumericExpectation, f: NumericFacts, rules: QualityRules
) -> list[Finding]:
    """Out of range, null burst, scaled and constant (swaps need two columns: `swapped`)."""
    found = [*_null_burst(name, e.null_share, f.n_missing, f.n_present, rules)]
    if f.n_present == 0 or math.isnan(e.low):
        return found
    if _constant(f.n_distinct, f.n_present, e.top_share, rules):
        found.append(
            Finding(
                name,
                "constant_column",
                1.0,
                "more than one value",
                f"every value is {f.shape[2]:g}",
            )
        )
        return found
    factor = _scale_factor(e.shape, f.shape, rules)
    if factor is not None:
        found.append(
            Finding(
                name,
                "scaled_column",
                factor,
                "about 1 x the reference's median",
                f"median {f.shape[2]:.4g}, reference {e.shape[2]:.4g}: a unit change?",
            )
        )
        return found
    share = f.n_outside / f.n_present
    limit = max(rules.out_of_range_share, 5 * e.outside_share)
    if share > limit:
        found.append(
            Finding(
                name,
                "out_of_range",
                share,
                f"at most {percent(limit)} outside {e.low:.4g} .. {e.high:.4g}",
                f"{f.n_outside:,} of {f.n_present:,} values",
            )
        )
    return found


def _null_burst(
    name: str, reference: float, n_missing: int, n_present: int, rules: QualityRules
) -> list[Finding]:
    n = n_missing + n_present
    if n == 0:
        return []
    share = n_missing / n
    error = math.sqrt(max(reference, 1 / n) * (1 - reference) / n)
    limit = max(reference + rules.null_increase, 2 * reference, reference + rules.null_z * error)
    if share <= limit:
        return []
    return [
        Finding(
            name,
            "null_burst",
            share,
            f"at most {percent(limit)} missing (reference {percent(reference)})",
            f"{n_missing:,} of {n:,} rows",
        )
    ]


def _constant(n_distinct: int, n_present: int, top_share: float, rules: QualityRules) -> bool:
    """One value throughout, where the reference makes that unlikely by chance."""
    return n_distinct == 1 and top_share < 1 and top_share**n_present < rules.constant_chance


def _scale_factor(
    reference: tuple[float, ...], current: tuple[float, ...], rules: QualityRules
) -> float | None:
    """The factor the column looks multiplied by, if any: its spread moved by a power of ten
    (10 .. 10^6 or their inverses), and so did its median unless that is near 0; or spread and
    median both moved by one other factor of at least `scale_other` (inches, pounds, ...)."""
    ref_spread, cur_spread = reference[-1] - reference[0], current[-1] - current[0]
    if ref_spread <= 0 or cur_spread <= 0:
        return None
    spread_exponent = math.log10(cur_spread / ref_spread)
    power = round(spread_exponent)
    median, ref_median = current[2], reference[2]
    median_exponent = (
        math.log10(median / ref_median)
        if abs(ref_median) >= 0.1 * ref_spread and median / ref_median > 0
        else None
    )
    if 1 <= abs(power) <= 6 and abs(spread_exponent - power) <= rules.scale_tolerance:
        if abs(ref_median) < 0.1 * ref_spread:
            return cur_spread / ref_spread
        if median_exponent is not None and abs(median_exponent - power) <= rules.scale_tolerance:
            return median / ref_median
        return None
    # any other unit: only when spread and median agree closely on one factor
    if (
        median_exponent is not None
        and abs(spread_exponent) >= math.log10(rules.scale_other)
        and abs(median_exponent - spread_exponent) <= rules.scale_agreement
    ):
        return median / ref_median
    return None


def categorical_findings(
    name: str, e: CategoricalExpectation, f: CategoricalFacts, rules: QualityRules
) -> list[Finding]:
    """Null burst, unseen, vanished and re-cased categories, constant."""
    n = sum(f.counts.values())
    found = [*_null_burst(name, e.null_share, f.n_missing, n, rules)]
    if n == 0:
        return found
    if len(f.counts) == 1 and _constant(1, n, e.top_share, rules):
        (only,) = f.counts
        found.append(
            Finding(
                name, "constant_column", 1.0, "more than one category", f"every value is {only!r}"
            )
        )
        return found
    by_form = {_form(k): k for k in e.shares}
    unseen = {k: v for k, v in f.counts.items() if k not in e.shares}
    recased = {k: v for k, v in unseen.items() if _form(k) in by_form}
    new = {k: v for k, v in unseen.items() if k not in recased}
    replaced = {by_form[_form(k)] for k in recased}
    if sum(recased.values()) / n >= rules.new_category_share:
        found.append(
            Finding(
                name,
                "category_case_changed",
                sum(recased.values()) / n,
                "the reference's spelling of each category",
                _named({f"{k!r} for {by_form[_form(k)]!r}": v for k, v in recased.items()}, n),
            )
        )
    if sum(new.values()) / n >= rules.new_category_share:
        found.append(
            Finding(
                name,
                "unseen_categories",
                sum(new.values()) / n,
                f"below {percent(rules.new_category_share)} of categories the reference never had",
                _named({repr(k): v for k, v in new.items()}, n),
            )
        )
    gone = sorted(
        (k for k, share in e.shares.items() if share * n >= rules.vanished_min_expected),
        key=lambda k: -e.shares[k],
    )
    gone = [k for k in gone if k not in f.counts and k not in replaced]
    if gone:
        found.append(
            Finding(
                name,
                "vanished_categories",
                sum(e.shares[k] for k in gone),
                "every category the reference had in more than a few rows",
                ", ".join(f"{k!r} (reference {percent(e.shares[k])})" for k in gone[:8])
                + (f" and {len(gone) - 8} more" if len(gone) > 8 else ""),
            )
        )
    return found


def _form(category: str) -> str:
    """A category as people read it: case and runs of whitespace left out."""
    return " ".join(category.split()).casefold()


def _named(counts: Mapping[str, int], n: int, limit: int = 8) -> str:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} ({percent(v / n)})" for k, v in ranked[:limit])
    return text + (f" and {len(ranked) - limit} more" if len(ranked) > limit else "")


def swapped(
    expectations: Mapping[str, ColumnExpectation],
    facts: Mapping[str, ColumnFacts],
    rules: QualityRules,
) -> list[Finding]:
    """Pairs of columns of one kind whose values look like each other's reference and not
    like their own: two findings per pair, one for each column."""
    names = [n for n in expectations if n in facts]
    found: list[Finding] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _looks_like(a, b, expectations, facts, rules) and _looks_like(
                b, a, expectations, facts, rules
            ):
                found.append(
                    Finding(a, "swapped_columns", 1.0, f"values like {a!r}'s", f"with {b!r}")
                )
                found.append(
                    Finding(b, "swapped_columns", 1.0, f"values like {b!r}'s", f"with {a!r}")
                )
    return found


def _looks_like(
    column: str,
    other: str,
    expectations: Mapping[str, ColumnExpectation],
    facts: Mapping[str, ColumnFacts],
    rules: QualityRules,
) -> bool:
    """`column`'s batch values look like `other`'s reference and not like its own."""
    own, theirs, f = expectations[column], expectations[other], facts[column]
    if isinstance(own, NumericExpectation) and isinstance(theirs, NumericExpectation):
        if not isinstance(f, NumericFacts) or f.n_present == 0:
            return False
        # close to the other's quantiles, and far from its own (two columns alike enough to
        # be neither are harmless to swap, and cannot be told apart)
        near, far = _distance(f.shape, theirs.shape), _distance(f.shape, own.shape)
        return near < rules.swap_match and far > 2 * rules.swap_match
    if isinstance(own, CategoricalExpectation) and isinstance(theirs, CategoricalExpectation):
        if not isinstance(f, CategoricalFacts) or not f.counts:
            return False
        n = sum(f.counts.values())
        in_theirs = sum(v for k, v in f.counts.items() if k in theirs.shares) / n
        in_own = sum(v for k, v in f.counts.items() if k in own.shares) / n
        return in_theirs >= 0.9 and in_own <= 0.5
    return False


def _distance(current: tuple[float, ...], reference: tuple[float, ...]) -> float:
    """The largest gap between the two columns' quantiles, in the reference's spread."""
    spread = _spread(reference)
    return max(abs(c - r) for c, r in zip(current, reference, strict=True)) / spread

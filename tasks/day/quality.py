"""The day's data-quality step: the engine's batch, drift facts and window handed to the checks
(tasks/quality/)."""

from __future__ import annotations

from datetime import date

from core.policy import Policy
from data_lake.columns import PREDICTION
from model_registry.registry import ModelCard
from tasks.edge.validation import ValidatedBatch
from tasks.performance.window import PerformanceOutcome
from tasks.quality.assess import BatchRows, QualityOutcome, assess
from tasks.quality.expectations import Expectations
from tasks.quality.facts import NumericFacts
from tasks.stats.batch_drift import DriftOutcome
from tasks.stats.columns import repeated_values
from tasks.stats.profile import ReferenceProfile


def quality_of(
    card: ModelCard,
    profile: ReferenceProfile,
    policy: Policy,
    batch_date: date,
    batch: ValidatedBatch,
    drift: DriftOutcome,
    performance: PerformanceOutcome,
) -> QualityOutcome:
    """The batch's columns against the reference's expectations (from the facts the drift step
    took), its rows against each other, its row count against the window's earlier batches."""
    columns = [*(f for f in card.feature_names if f not in policy.exclude_features), PREDICTION]
    # a row can repeat another only where each value is tied in its column: the drift step's
    # sorts found those ties, a sort of the rows left finds them in a bucketed column, so rows
    # with a continuous value are never hashed
    ties = {
        name: f.tied
        for name, f in drift.facts.items()
        if name in columns and isinstance(f, NumericFacts)
    }
    rows = BatchRows(
        batch.table.select(columns),
        batch.scored_at,
        ties,
        batch.repeated_copies,
        find_repeated=repeated_values,
    )
    return assess(
        profile.expectations,
        drift.facts,
        rows,
        batch_date=batch_date,
        row_history={p.batch_date: p.n_rows for p in performance.batches},
        mute=policy.mute_quality_checks,
    )


def derived_expectations(card: ModelCard, expectations: Expectations) -> tuple[str, ...]:
    """The warning of a version registered before the data-quality checks: its expectations
    come from its stored profile."""
    if expectations.learned_from == "reference":
        return ()
    return (
        f"{card.name} {card.version}'s data-quality expectations come from its stored profile "
        "(registered before the checks existed), which does not tell how often the reference "
        "repeats a row: none is assumed; register the version again to learn it",
    )

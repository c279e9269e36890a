"""The fault suite (scripts/quality_suite.py), shortened: every fault caught and named the night
it lands, and the clean days quiet."""

from __future__ import annotations

from scripts.quality_suite import FAULTS, run_suite, summary


def test_the_fault_suite_catches_and_names_all_eight_faults_with_at_most_one_false_alarm() -> None:
    outcomes = run_suite(120, seed=11)
    result = summary(outcomes)
    assert len(result["faults"]) == len(FAULTS) == 8  # type: ignore[arg-type]
    assert result["named"] == 8, result["faults"]
    assert result["false_alarm_days"] <= 1, result["false_alarms"]

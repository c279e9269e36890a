"""A model's policy: what it may hold, where it is kept, and what a day run under it reports."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.errors import InputError
from core.policy import Persistence, Policy, parse_policy
from core.settings import DriftRule, load_settings
from data_lake.lake import Lake
from driftline import commands
from model_registry.policies import current_policy, set_policy
from model_registry.registry import Registry
from tasks.day.backfill import replay, write_replayed
from tasks.day.engine import monitor_and_write, run_day
from tasks.day.inputs import load_model_context, read_window
from tasks.day.persistence import sustain
from tasks.export.catalogue import RunStamp, metric_families
from tasks.results.day import from_json
from tests.builders import result as built_result

pytestmark = pytest.mark.slow  # trains nothing, but simulates and monitors diamonds days
START = date(2026, 4, 1)
MODEL = "diamonds-price"


def samples(result) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = metric_families(result, RunStamp(finished_at_seconds=1.0, duration_seconds=1.0))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


# --- what a policy file may hold -------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"alpah": 0.01}, "'alpah'"),
        ({"alpha": 0}, "alpha is 0"),
        ({"alpha": "0.05"}, "alpha is '0.05'"),
        ({"min_score": 1.5}, "min_score is 1.5"),
        ({"min_label_coverage": -0.1}, "min_label_coverage is -0.1"),
        ({"performance_alert_ratio": 0}, "performance_alert_ratio is 0"),
        ({"drift_persistence": {"days": 4, "of": 3}}, "drift_persistence is"),
        ({"drift_persistence": {"days": 3}}, "drift_persistence is"),
        ({"features": {"carat": {"alpha": 0.01, "score": 0.2}}}, "features.carat: unknown key"),
        ({"mute_features": "carat"}, "mute_features is 'carat'"),
        ({"mute_features": ["x"], "exclude_features": ["x"]}, "'x' both muted and excluded"),
        ({"mute_quality_checks": {"x": "range"}}, "mute_quality_checks.x is 'range'"),
        (["alpha"], "expected a mapping"),
    ],
)
def test_a_bad_key_or_value_is_refused_naming_it(raw, named) -> None:
    with pytest.raises(InputError, match=r"policy\.yml") as refused:
        parse_policy(raw, source="policy.yml")
    assert named in str(refused.value)


def test_an_empty_policy_is_the_defaults() -> None:
    assert parse_policy({}, source="p") == Policy() == parse_policy(None, source="p")
    assert Policy().drift_rule(DriftRule()) == DriftRule()


def test_a_feature_rule_takes_the_models_thresholds_where_it_sets_none() -> None:
    policy = parse_policy(
        {"alpha": 0.01, "min_score": 0.2, "features": {"x": {"min_score": 0.3}}}, source="p"
    )
    assert policy.feature_rules(DriftRule()) == {"x": DriftRule(alpha=0.01, min_score=0.3)}


# --- where it is kept ---------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path: Path, diamonds_registry: Path):
    import shutil

    shutil.copytree(diamonds_registry, tmp_path / "registry")
    settings = load_settings(
        {"DATA_LAKE_URI": str(tmp_path / "lake"), "MODEL_REGISTRY_URI": str(tmp_path / "registry")}
    )
    commands.simulate(settings, model=MODEL, start=START, days=8, rows_per_day=400,
                      scenario="data-drift", seed=5, drift_start=START)  # fmt: skip
    return settings, Registry.open(settings.model_registry_uri)


def test_a_new_policy_is_a_new_version_and_the_model_version_is_untouched(world) -> None:
    _, registry = world
    card = registry.card(MODEL)
    assert current_policy(registry, MODEL).version == "default"
    assert set_policy(registry, MODEL, {"alpha": 0.01}, source="a.json").version == "p1"
    second = set_policy(registry, MODEL, {"mute_features": ["x"]}, source="b.json")
    assert (second.version, second.mute_features, second.alpha) == ("p2", ("x",), 0.05)
    assert current_policy(registry, MODEL) == second
    assert registry.card(MODEL) == card and registry.versions(MODEL) == [card.version]


def test_a_policy_naming_a_feature_the_model_lacks_is_refused(world) -> None:
    _, registry = world
    with pytest.raises(InputError, match=r"a\.yml: feature\(s\) 'weekday' are not features"):
        set_policy(registry, MODEL, {"mute_features": ["weekday"]}, source="a.yml")
    assert current_policy(registry, MODEL).version == "default"


def test_a_policy_changed_after_it_was_set_is_refused(world) -> None:
    _, registry = world
    set_policy(registry, MODEL, {"alpha": 0.01}, source="a.json")
    stored = Path(registry.storage.root) / MODEL / "policies" / "p1.json"
    stored.write_text(stored.read_text().replace("0.01", "0.5"))
    with pytest.raises(InputError, match=r"p1\.json: sha256 .* does not match its record"):
        current_policy(registry, MODEL)


# --- what a day run under it reports -------------------------------------------------------------
def test_a_muted_feature_is_tested_and_shown_but_never_alerts(world) -> None:
    settings, registry = world
    lake = Lake.open(settings.data_lake_uri)
    day = START + timedelta(days=7)
    unmuted = run_day(lake, load_model_context(registry, MODEL), day, settings).result
    drifted = unmuted.drifted_features
    assert drifted, "the data-drift scenario drifts some features"
    set_policy(registry, MODEL, {"mute_features": [drifted[0]]}, source="p.json")
    written = monitor_and_write(lake, load_model_context(registry, MODEL), day, settings)
    stored = json.loads(Path(written.result_uri).read_text())
    entry = next(f for f in stored["features"] if f["feature"] == drifted[0])
    assert entry["muted"] is True and entry["is_drifted"] is True
    assert stored["policy_version"] == "p1"
    assert drifted[0] not in written.result.drifted_features
    gauges = samples(written.result)
    labels = (("feature", drifted[0]), ("model_version", "v1"))
    assert gauges[("ml_feature_drift_detected", labels)] == 0
    assert gauges[("ml_feature_drift_muted", labels)] == 1
    assert gauges[("ml_features_drifted", (("model_version", "v1"),))] == len(drifted) - 1
    monitored = gauges[("ml_features_monitored", (("model_version", "v1"),))]
    assert monitored == len(unmuted.features) - 1


def test_an_excluded_feature_is_not_tested_and_the_others_are_adjusted_without_it(world) -> None:
    settings, registry = world
    lake = Lake.open(settings.data_lake_uri)
    set_policy(registry, MODEL, {"exclude_features": ["x", "y", "z"]}, source="p.json")
    result = run_day(lake, load_model_context(registry, MODEL), START, settings).result
    assert [f.feature for f in result.features] == ["carat", "cut", "color", "clarity", "depth",
                                                    "table"]  # fmt: skip
    assert result.excluded_features == ("x", "y", "z")
    tested = [f for f in result.features if f.status == "ok"]
    from scipy.stats import false_discovery_control

    adjusted = false_discovery_control([f.p_value for f in tested], method="bh")
    assert [f.p_value_adjusted for f in tested] == pytest.approx(list(adjusted), rel=1e-12)


def test_a_feature_threshold_decides_that_feature_alone(world) -> None:
    settings, registry = world
    lake = Lake.open(settings.data_lake_uri)
    day = START + timedelta(days=7)
    before = run_day(lake, load_model_context(registry, MODEL), day, settings).result
    name = before.drifted_features[0]
    set_policy(registry, MODEL, {"features": {name: {"min_score": 1.0}}}, source="p.json")
    after = run_day(lake, load_model_context(registry, MODEL), day, settings).result
    assert after.drifted_features == [f for f in before.drifted_features if f != name]


def test_label_coverage_and_alert_ratios_come_from_the_policy(world) -> None:
    settings, registry = world
    lake = Lake.open(settings.data_lake_uri)
    set_policy(registry, MODEL, {"min_label_coverage": 0.3, "performance_alert_ratio": 1.5,
                                 "estimate_alert_ratio": 2.0}, source="p.json")  # fmt: skip
    result = run_day(lake, load_model_context(registry, MODEL), START + timedelta(days=7),
                     settings).result  # fmt: skip
    assert result.min_label_coverage == 0.3
    current = result.current_performance
    assert current is not None and 0.3 <= current.label_coverage_ratio < 0.8
    gauges = samples(result)
    assert gauges[("ml_policy_performance_alert_ratio", (("model_version", "v1"),))] == 1.5
    assert gauges[("ml_policy_estimate_alert_ratio", (("model_version", "v1"),))] == 2.0
    info = (("model_version", "v1"), ("policy_version", "p1"))
    assert gauges[("ml_policy_info", info)] == 1


# --- drift that must persist -------------------------------------------------------------------
def test_a_feature_alerts_when_drifted_on_enough_of_the_last_days() -> None:
    day = built_result(shift=1.0)
    assert day.drifted_features == ["carat"]
    three_of_five = Persistence(days=3, of=5)
    d = day.batch_date
    twice_before = {d - timedelta(days=1): {"carat"}, d - timedelta(days=4): {"carat"}}
    assert sustain(day, three_of_five, twice_before).alerting == ["carat"]
    once_before = {d - timedelta(days=2): {"carat"}, d - timedelta(days=5): {"carat"}}
    assert sustain(day, three_of_five, once_before).alerting == []
    quiet_today = built_result(shift=0.0)
    assert sustain(quiet_today, three_of_five, twice_before).alerting == []
    assert sustain(quiet_today, Persistence(2, 5), twice_before).alerting == ["carat"]


def test_a_backfill_counts_the_earlier_days_as_the_nightly_runs_do(world, tmp_path) -> None:
    """Days replayed side by side, then written in order: each day's sustained verdict is the
    one a nightly run gives after the earlier nights have run."""
    import shutil

    settings, registry = world
    set_policy(registry, MODEL, {"drift_persistence": {"days": 3, "of": 4}}, source="p.json")
    context = load_model_context(registry, MODEL)
    days = [START + timedelta(days=i) for i in range(8)]
    nightly_root = tmp_path / "nightly"
    shutil.copytree(settings.data_lake_uri, nightly_root)
    nightly = Lake.open(str(nightly_root))
    by_night = [monitor_and_write(nightly, context, d, settings).result for d in days]
    lake = Lake.open(settings.data_lake_uri)
    window = read_window(lake, context.card, days[0], days[-1], window_days=30)
    replayed = [replay(lake, context, window, d, settings) for d in reversed(days)]
    outcomes = write_replayed(lake, replayed, settings)
    assert [o.result for o in outcomes] == by_night
    for d in days:
        stored = lake.read_bytes(lake.result_path(MODEL, d))
        assert stored == nightly.read_bytes(nightly.result_path(MODEL, d)), d
    for i, result in enumerate(by_night):
        last_four = [set(r.drifted_features) for r in by_night[max(0, i - 3) : i + 1]]
        names = {f.feature for f in result.features}
        expected = {f for f in names if sum(f in drifted for drifted in last_four) >= 3}
        assert set(result.alerting) == expected, result.batch_date
    assert by_night[0].alerting == by_night[1].alerting == [], "none sustained before day 3"
    assert by_night[-1].alerting, "the data-drift scenario sustains some drift"
    assert from_json(stored or b"").alerting == by_night[-1].alerting


# --- the command line and the Python API ---------------------------------------------------------
def test_policy_set_and_show_from_the_command_line(world, tmp_path, capsys) -> None:
    from driftline.cli import main

    settings, _ = world
    flags = ["--registry", settings.model_registry_uri]
    file = tmp_path / "policy.yml"
    file.write_text("mute_features: [x]\nfeatures:\n  carat: {min_score: 0.2}\n")
    assert main([*flags, "policy", "set", "--model", MODEL, str(file)]) == 0
    assert main([*flags, "policy", "show", "--model", MODEL]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert (shown["version"], shown["mute_features"]) == ("p1", ["x"])
    assert shown["features"] == {"carat": {"min_score": 0.2}}
    file.write_text("{alpha: 2}\n")
    assert main([*flags, "policy", "set", "--model", MODEL, str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "policy.yml: alpha is 2, expected a number above 0" in err
    assert main([*flags, "policy", "show", "--model", "nope"]) == 2
    assert "model 'nope' has no version" in capsys.readouterr().err


def test_the_python_api_sets_a_policy_from_a_mapping_or_a_file(world, tmp_path) -> None:
    import driftline

    settings, _ = world
    registry = settings.model_registry_uri
    assert driftline.get_policy(MODEL, registry=registry).version == "default"
    set_from_mapping = driftline.set_policy(MODEL, {"exclude_features": ["z"]}, registry=registry)
    assert set_from_mapping.exclude_features == ("z",)
    file = tmp_path / "p.json"
    file.write_text('{"drift_persistence": {"days": 2, "of": 3}}')
    assert driftline.set_policy(MODEL, file, registry=registry).version == "p2"
    assert driftline.get_policy(MODEL, registry=registry).drift_persistence == Persistence(2, 3)
    file.write_text("{not json")
    with pytest.raises(InputError, match=r"p\.json is not valid JSON or YAML"):
        driftline.set_policy(MODEL, file, registry=registry)

"""`driftline demo`: the whole story on the local stack, in one command."""

from __future__ import annotations

import time
import urllib.error
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from core.settings import DEFAULT_MODEL, Settings
from driftline import commands, hints, stack
from driftline.stack.alerts import describe, rule_alerts

if TYPE_CHECKING:
    from model_registry.registry import ModelCard
    from tasks.models.simulate import Scenario

DRIFT_AFTER_DAYS = 10
CLASSIFIER_MODEL = "tumour-classifier"  # beside diamonds-price: a classifier, covariate shift
# Prometheus scrapes and evaluates every 15 s: two rounds see the live push become an alert
ALERT_WAIT_SECONDS = 45.0


def demo(
    settings: Settings, config: stack.StackConfig, *, days: int = 21, rows_per_day: int = 2000
) -> None:
    """Train, simulate `days` days up to yesterday with drift from day 11, backfill them into
    the local Prometheus, then run the nightly flow for yesterday and push it live. The stack
    (`config`) is up, and Prefect records the runs in its server."""
    from flows.backfill import backfill
    from flows.monitor import monitor

    for card in (
        commands.train(settings, model=DEFAULT_MODEL),
        commands.train_classifier(settings, model=CLASSIFIER_MODEL),
    ):
        print(f"trained {card.name} {card.version}: {_holdout(card)}")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=days - 1)
    drift_start = start + timedelta(days=min(DRIFT_AFTER_DAYS, days - 1))
    history = config.state_dir / "prometheus" / "data"
    # the regressor meets data and concept drift; the classifier a covariate shift, which its
    # estimate before labels (CBPE) follows
    runs: tuple[tuple[str, Scenario], ...] = (
        (DEFAULT_MODEL, "both"),
        (CLASSIFIER_MODEL, "data-drift"),
    )
    for model, scenario in runs:
        commands.simulate(
            settings,
            model=model,
            start=start,
            days=days,
            rows_per_day=rows_per_day,
            scenario=scenario,
            seed=42,
            drift_start=drift_start,
        )
        print(f"simulated {model}: {days} days from {start}, {scenario} from {drift_start}")
        if days > 1:
            backfill(
                start=start,
                end=yesterday - timedelta(days=1),
                model=model,
                prometheus_data=str(history),
            )
    shown = monitor(model=CLASSIFIER_MODEL, batch_date=yesterday, push=True)
    print(f"\nnightly run of {CLASSIFIER_MODEL} for {yesterday}: class shares {shown.class_shares}")
    result = monitor(model=DEFAULT_MODEL, batch_date=yesterday, push=True)
    lake_results = f"{settings.data_lake_uri}/monitoring/model={DEFAULT_MODEL}/"
    print(f"\nnightly run for {yesterday}: drifted {', '.join(result.drifted_features) or 'none'}")
    print(_alert_outlook(config))
    print(
        f"\nwhere to look:\n"
        f"  results per day   {lake_results}batch_date=*/result.json\n"
        f"  Prefect UI        {config.url('prefect')}/runs (the monitor and backfill runs, "
        "their artifacts)\n"
        f"  Prometheus        {config.url('prometheus')}/classic/graph?g0.expr=ml_features_drifted"
        f"&g0.range_input=3w  (backfilled days appear within a minute)\n"
        f"  alerts            {hints.command('alerts')}, "
        f"{config.url('prometheus')}/classic/alerts, {config.url('alertmanager')}\n"
        f"  Pushgateway       {config.url('pushgateway')}\n"
        f"  Grafana           `docker compose up` on a machine with Docker (see README)\n"
        f"  run it again      {hints.command('monitor')}  (yesterday's batch, in a second or "
        "two: the stack's warm runner has its imports done)\n"
        f"  stop the stack    {hints.command('stack down')}"
    )


def _holdout(card: ModelCard) -> str:
    from model_registry.registry import HoldoutMetrics

    if isinstance(card.metrics, HoldoutMetrics):
        return f"holdout MAE {card.metrics.mae:.0f}"
    return f"a classifier, holdout accuracy {card.metrics.accuracy:.3f}"


def _alert_outlook(config: stack.StackConfig) -> str:
    """The alerts the live push raised, with when each fires, once Prometheus has seen it."""
    deadline = time.monotonic() + ALERT_WAIT_SECONDS
    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            alerts = [
                a
                for a in rule_alerts(config.url("prometheus"))
                if a["labels"].get("model") == DEFAULT_MODEL
            ]
        except (urllib.error.URLError, OSError):
            alerts = []
        if alerts:
            break
        time.sleep(3)
    if not alerts:
        return (
            f"\nno alert pending yet: Prometheus evaluates the rules every 15 s; "
            f"`{hints.command('alerts')}` shows them as they come"
        )
    now = datetime.now(UTC).timestamp()
    lines = [f"  {describe(a, now)}" for a in alerts]
    return (
        "\nalerts (they fire after their `for:`; Alertmanager then notifies the stack's "
        f"receiver, which `{hints.command('alerts')}` lists):\n" + "\n".join(lines)
    )

"""`driftline demo`: the whole story on the local stack, in one command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.settings import DEFAULT_MODEL, Settings
from driftline import commands, stack

DRIFT_AFTER_DAYS = 10


def demo(settings: Settings, *, days: int = 21, rows_per_day: int = 2000) -> None:
    """Train, simulate `days` days up to yesterday with drift from day 11, backfill them into
    the local Prometheus, then run the nightly flow for yesterday and push it live."""
    from flows.backfill import backfill
    from flows.monitor import monitor

    config = stack.StackConfig()
    print(stack.format_status(stack.up(config)))
    card = commands.train(settings, model=DEFAULT_MODEL)
    print(f"trained {card.name} {card.version}: holdout MAE {card.metrics.mae:.0f}")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=days - 1)
    drift_start = start + timedelta(days=min(DRIFT_AFTER_DAYS, days - 1))
    commands.simulate(
        settings,
        model=DEFAULT_MODEL,
        start=start,
        days=days,
        rows_per_day=rows_per_day,
        scenario="both",
        seed=42,
        drift_start=drift_start,
    )
    print(f"simulated {days} days from {start} with data and concept drift from {drift_start}")
    history = config.state_dir / "prometheus" / "data"
    if days > 1:
        backfill(
            start=start,
            end=yesterday - timedelta(days=1),
            model=DEFAULT_MODEL,
            prometheus_data=str(history),
        )
    result = monitor(model=DEFAULT_MODEL, batch_date=yesterday, push=True)
    lake_results = f"{settings.data_lake_uri}/monitoring/model={DEFAULT_MODEL}/"
    print(
        f"\nnightly run for {yesterday}: drifted {', '.join(result.drifted_features) or 'none'}\n"
        f"\nwhere to look:\n"
        f"  results per day   {lake_results}batch_date=*/result.json\n"
        f"  Prometheus        {config.url('prometheus')}/graph?g0.expr=ml_features_drifted"
        f"&g0.range_input=3w  (backfilled days appear within a minute)\n"
        f"  alerts            {config.url('prometheus')}/alerts and {config.url('alertmanager')}\n"
        f"  Pushgateway       {config.url('pushgateway')}\n"
        f"  Prefect UI        `make prefect-ui`, then http://127.0.0.1:4200\n"
        f"  Grafana           `docker compose up` on a machine with Docker (see README)\n"
        f"  stop the stack    driftline stack down"
    )

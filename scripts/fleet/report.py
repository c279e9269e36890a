"""The figures scripts/scale.py prints."""

from __future__ import annotations

from typing import Any


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB"


def report(f: dict[str, Any]) -> str:
    p = f["phases"]
    v = f["verification"]
    db = f["database"]
    lines = [
        "",
        f"== {f['models']} models x {f['days']} days x {f['rows_per_day']} rows, "
        f"{f['workers']} workers x limit {f['worker_limit']} ==",
    ]
    for name in ("deploy", "backfill", "nightly"):
        q = p[name]
        rate = q["model_days_per_minute"]
        lines.append(
            f"{name:<9} {q['seconds']:>8.1f} s  {q['flow_runs']:>4} flow runs  "
            f"{q['model_days']:>5} model-days  "
            f"{(f'{rate:.1f} model-days/min') if rate else '':<22}"
            f"{q['api_requests']:>7} API requests  {q['sql_statements']:>8} SQL statements  "
            f"database +{_mb(q['database_bytes'])}"
        )
    lines += [
        f"total (servers up to verification): {f['seconds_total']:.0f} s; runs per worker: "
        f"{f['runs_per_worker']}",
        f"Prefect API requests (uvicorn access log): {f['api_requests_total']}; "
        f"SQL statements (pg_stat_statements, all phases and start-up): {db['sql_statements']}",
        f"Prefect database: {_mb(db['size_bytes'])}; rows {db['rows']}",
        "  by table: " + ", ".join(f"{t} {_mb(n)}" for t, n in db["table_bytes"].items()),
        f"Prefect server RSS {_mb(f['prefect_server_rss_bytes'])}",
        f"Pushgateway: {f['pushgateway']['groups']} groups, "
        f"RSS {_mb(f['pushgateway']['rss_bytes'])}",
    ]
    for when in ("after_backfill", "after_push"):
        q = f[f"prometheus_{when}"]
        lines.append(
            f"Prometheus {when.replace('_', ' ')}: head series {q['head_series']:.0f}, "
            f"history series (a sample in days 1..{f['days'] - 1}) {q['history_series']:.0f}, "
            f"{q['blocks']:.0f} blocks ({_mb(q['block_bytes'])}), RSS {_mb(q['rss_bytes'])}"
        )
    lines += [
        f"verified ({v['seconds']} s): {len(v['verified_models'])} models day by day "
        f"({', '.join(v['verified_models'][:5])}{', ...' if len(v['verified_models']) > 5 else ''}"
        f"): {len(v['lake_differences'])} lake differences, {len(v['push_differences'])} push "
        f"differences; all models: {len(v['results_missing'])} results missing, "
        f"{len(v['groups_not_on_last_day'])} Pushgateway groups not on the last day",
    ]
    for name in ("backfill", "nightly"):
        top = ", ".join(f"{k} {n}" for k, n in p[name]["top_requests"])
        lines.append(f"top requests, {name}: {top}")
    return "\n".join(lines)

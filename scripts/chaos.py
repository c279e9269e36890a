"""A year of nightly runs under faults, then the documented recovery; nothing may be lost.

    .venv/bin/python scripts/chaos.py [--days 365] [--seed 1] [--rows-per-day 200] [--json]

Run as root (it mounts a tmpfs for the lake). It trains the diamonds model, simulates `--days`
daily batches ending three days ago, with data and concept drift from 60 % of the range
(`driftline.commands.train/simulate`), copies the lake, and makes the same year twice:

- **baseline**, without faults, against a local stack of its own (Pushgateway and Prometheus
  from `driftline.stack`, on free loopback ports, state in the work dir): `driftline backfill`
  of the year with `--prometheus-data` (each day's result is byte for byte the nightly run's,
  tests/test_backfill.py; it is also much faster than 365 processes) and the newest day's
  nightly run `driftline monitor --date D`, whose push is the live state;
- **chaos**: every nightly run `python -m driftline monitor --date D` in order, as a process
  of its own that can be killed, against a second stack with a Prefect server (the baseline's
  runs use it too, before the chaos starts) and the lake on a small tmpfs, with faults drawn at
  random (seeded): the run SIGKILLed at a random instant; the Pushgateway, Prometheus or the
  Prefect server down for 1-3 nights; the Prefect server SIGKILLed during a run (and started
  again at once); the lake root gone for 1-45 s from the start of a run (an unmounted share,
  retried by the run); the day's scored partition not there yet (a late upstream); the lake's
  disk full for 1-3 nights (0-12 KiB left).

Then the recovery the README documents (section "Reliability"): every service back and the disk
freed, each failed day run again with `driftline monitor --date D` (`--no-push` except the
newest day: the Pushgateway holds one day), and `driftline backfill` of the range with
`--prometheus-data` for the history at event time (killed once at random and run once with
Prometheus down, then repeated until it exits 0), Prometheus restarted to load the blocks.

A compressed year leaves no live scrape at each day's own time, so both worlds' event-time
history comes from a backfill; the chaos world's comes after faults hit it too.

It then compares the two end states and prints: faults injected by kind, days that needed
recovery, days lost (no result, or no history in Prometheus), lake differences (every file of
the lake byte for byte, result.json included, before and after the backfill), Prometheus
differences (each day's gauges at its own timestamp, D+1 02:00 UTC, through the HTTP API; and
the live gauges of the newest day). Excluded from the comparison, because they differ by
nature: `ml_monitoring_run_duration_seconds` (a measured duration) everywhere;
`ml_monitoring_last_success_timestamp_seconds` and the Pushgateway's `push_time_seconds` /
`push_failure_time_seconds` in the live values (wall-clock times; in the history the former is
the scheduled time and is compared). Exit status 0 when nothing was lost and nothing differs.

Timings: the push is retried after 0.5 and 1 s (`DRIFTLINE_PUSH_RETRY_DELAYS`) instead of
2, 10, 30 s so that a Pushgateway outage costs seconds; the lake's own retries are the product's
(2, 10, 30 s).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core.settings import load_settings
from driftline import commands, stack
from driftline.stack.launcher import free_port
from scripts.faults.observe import (
    history_at,
    lake_differences,
    leftovers,
    live_values,
    tmpfs,
    tree,
    wait_live_day,
)
from scripts.faults.world import EXCLUDED_HISTORY, EXCLUDED_LIVE, MODEL, World, log
from scripts.faults.year import Chaos


def nightly_differences(base: Path, chaos: Path, run: Chaos) -> list[str]:
    """After the nights, before any recovery: every day's result.json is the baseline's bytes,
    or absent after a failed night (a run killed or failed midway leaves all of it or none)."""
    out = []
    for day in run.days:
        part = f"monitoring/model={MODEL}/batch_date={day}/result.json"
        if not (chaos / part).is_file():
            if run.outcome[day] == 0:
                out.append(f"no result after a night that exited 0: {part}")
        elif not filecmp.cmp(base / part, chaos / part, shallow=False):
            out.append(f"differs after the night (exit {run.outcome[day]}): {part}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.33, help="share of faulty nights")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory, removed")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--kinds", help="draw only these faults (comma-separated; debugging)")
    parser.add_argument(
        "--recovery",
        choices=["reruns", "backfill"],
        default="reruns",
        help="rerun each failed day with `driftline monitor --date`, or backfill the range "
        "(faster when the failed days are many and spread) (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="driftline-chaos-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    last = datetime.now(UTC).date() - timedelta(days=3)
    days = [last - timedelta(days=args.days - 1 - i) for i in range(args.days)]
    rng = random.Random(args.seed)

    registry = work / "registry"
    settings = load_settings(
        {"DATA_LAKE_URI": str(work / "baseline" / "lake"), "MODEL_REGISTRY_URI": str(registry)}
    )
    log(f"training {MODEL}; simulating {days[0]} .. {days[-1]}")
    commands.train(settings, model=MODEL)
    commands.simulate(
        settings,
        model=MODEL,
        start=days[0],
        days=args.days,
        rows_per_day=args.rows_per_day,
        scenario="both",
        seed=args.seed,
        drift_start=days[0] + timedelta(days=int(args.days * 0.6)),
    )
    lake_bytes = sum(p.stat().st_size for p in (work / "baseline" / "lake").rglob("*"))
    # the inputs, a result per day (~20 KiB at 200 rows) and room for what the runs leave
    mount = work / "chaos" / "disk"
    size = 2 * lake_bytes + args.days * 64 * 1024 + 16 * 2**20

    def config(name: str, components: tuple[stack.Component, ...]) -> stack.StackConfig:
        return stack.StackConfig(
            state_dir=work / name / "stack",
            prometheus_port=free_port(),
            pushgateway_port=free_port(),
            alertmanager_port=free_port(),
            receiver_port=free_port(),
            prefect_port=free_port(),
            scrape_interval="1s",
            evaluation_interval="1s",
            components=components,
        )

    worlds: list[World] = []
    try:
        with tmpfs(mount, size):
            shutil.copytree(work / "baseline" / "lake", mount / "lake")
            chaos_config = config("chaos", ("pushgateway", "prometheus", "prefect"))
            prefect_api = f"{chaos_config.url('prefect')}/api"  # one Prefect server for both
            base = World("baseline", work / "baseline", work / "baseline" / "lake", registry,
                         config("baseline", ("pushgateway", "prometheus")))  # fmt: skip
            chaos_world = World("chaos", work / "chaos", mount / "lake", registry, chaos_config)
            for world in (chaos_world, base):
                world.config.state_dir.mkdir(parents=True, exist_ok=True)
                worlds.append(world)
                world.start(prefect_api)
            run = Chaos(args, work, days, rng, base, chaos_world, mount)
            log("baseline: the year without faults")
            expected = run.baseline_year()
            log("chaos: the year under faults")
            run.chaos_year()
            # before any recovery: a failed night left the day's whole result or none of it
            lake_nightly = nightly_differences(base.lake, chaos_world.lake, run)
            if args.recovery == "reruns":
                recovered = run.recover()
                lake_before = lake_differences(base.lake, chaos_world.lake)
                run.backfill(chaos_world, faults=True, expected=expected)
            else:  # the range's backfill rewrites every day's result and writes its history
                recovered = [d for d in days if run.outcome[d] != 0]
                lake_before = []
                run.backfill(chaos_world, faults=True, expected=expected)
                run.push_newest()
            lake_before = lake_nightly + lake_before
            lake_after = lake_differences(base.lake, chaos_world.lake)
            left = leftovers(chaos_world.lake)
            if args.workdir:  # keep the chaos lake for a look after the disk is unmounted
                shutil.copytree(chaos_world.lake, work / "chaos" / "lake", dirs_exist_ok=True)
            figures = compare(run, base, chaos_world, recovered, lake_before, lake_after, left)
            figures["seconds"] = round(time.monotonic() - began)
    finally:
        for world in worlds:
            stack.down(world.config.state_dir)
    report(figures, args)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    ok = not (
        figures["days_lost"] or figures["lake_differences"] or figures["prometheus_differences"]
    )
    return 0 if ok else 1


def compare(
    run: Chaos,
    base: World,
    chaos_world: World,
    recovered: list[date],
    lake_before: list[str],
    lake_after: list[str],
    left: list[str],
) -> dict[str, Any]:
    wait_live_day(base.url("prometheus"), run.days[-1])
    wait_live_day(chaos_world.url("prometheus"), run.days[-1])
    lost, history_diffs = [], []
    series = 0
    for day in run.days:
        result = (
            chaos_world.lake / "monitoring" / f"model={MODEL}" / f"batch_date={day}" / "result.json"
        )
        want = history_at(base.url("prometheus"), day)
        got = history_at(chaos_world.url("prometheus"), day)
        if not want:
            raise RuntimeError(f"the baseline has no history for {day}")
        series += len(want)
        if not result.is_file() or not got:
            lost.append(str(day))
        for key in sorted(want.keys() | got.keys()):
            if want.get(key) != got.get(key):
                history_diffs.append(f"{day} {key}: {want.get(key)} != {got.get(key)}")
    live_want = live_values(base.url("prometheus"))
    live_got = live_values(chaos_world.url("prometheus"))
    live_diffs = [
        f"live {k}: {live_want.get(k)} != {live_got.get(k)}"
        for k in sorted(live_want.keys() | live_got.keys())
        if live_want.get(k) != live_got.get(k)
    ]
    kinds = Counter(kind for kind, _ in run.faults)
    return {
        "days": len(run.days),
        "first_day": str(run.days[0]),
        "last_day": str(run.days[-1]),
        "seed": run.args.seed,
        "recovery": run.args.recovery,
        "faults": len(run.faults),
        "faults_by_kind": dict(sorted(kinds.items())),
        "faults_missed": dict(run.missed),
        "days_recovered": len(recovered),
        "recovered_days": [str(d) for d in recovered],
        "failure_reasons": dict(Counter(_reason(e) for e in run.errors.values())),
        "days_lost": len(lost),
        "lost": lost,
        "lake_differences": len(lake_before) + len(lake_after),
        "lake_difference_list": (
            [f"after the nights (and their reruns): {d}" for d in lake_before]
            + [f"after the history backfill: {d}" for d in lake_after]
        )[:50],
        "lake_files_compared": len(tree(base.lake)),
        "leftover_hidden_files": left,
        "prometheus_differences": len(history_diffs) + len(live_diffs),
        "prometheus_difference_list": (history_diffs + live_diffs)[:50],
        "history_series_compared": series,
        "live_series_compared": len(live_want),
        "excluded": {"history": sorted(EXCLUDED_HISTORY), "live": sorted(EXCLUDED_LIVE)},
    }


def _reason(error: str) -> str:
    """A short class of a failed night's error line."""
    for needle, name in (
        ("killed", "killed"),
        ("could not push", "Pushgateway down"),
        ("Prefect server", "Prefect server down"),
        ("no space left", "disk full"),
        ("no scored batch", "batch not there"),
        ("kept failing", "lake unreachable through the retries"),
        ("lock in the data lake could not be taken", "lake unreachable at the day's lock"),
    ):
        if needle in error:
            return name
    return error[:120] or "killed"


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"chaos: {figures['days']} days ({figures['first_day']} .. {figures['last_day']}), "
          f"seed {figures['seed']}, {figures['seconds']} s")  # fmt: skip
    print(f"faults injected: {figures['faults']}")
    for kind, n in figures["faults_by_kind"].items():
        print(f"  {kind:<18} {n}")
    if figures["faults_missed"]:
        print(f"  (drawn but not delivered, the run had ended: {figures['faults_missed']})")
    print(f"days that needed recovery: {figures['days_recovered']}")
    for reason, n in sorted(figures["failure_reasons"].items()):
        print(f"  {reason:<40} {n}")
    print(f"days lost: {figures['days_lost']} {figures['lost'] or ''}")
    print(f"lake differences: {figures['lake_differences']} "
          f"({figures['lake_files_compared']} files compared byte for byte, before and after "
          f"the history backfill)")  # fmt: skip
    print(f"prometheus differences: {figures['prometheus_differences']} "
          f"({figures['history_series_compared']} day-series at their own timestamps, "
          f"{figures['live_series_compared']} live series)")  # fmt: skip
    print(f"excluded: {', '.join(figures['excluded']['live'])} (live); "
          f"{', '.join(figures['excluded']['history'])} (history)")  # fmt: skip
    if figures["leftover_hidden_files"]:
        print(f"hidden files left in the lake: {len(figures['leftover_hidden_files'])}: "
              f"{figures['leftover_hidden_files'][:5]}")  # fmt: skip
    for line in figures["lake_difference_list"] + figures["prometheus_difference_list"]:
        print(f"  {line}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())

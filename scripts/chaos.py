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
import contextlib
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core import processes
from core.settings import load_settings
from driftline import commands, stack
from driftline.stack.launcher import free_port
from tasks.export.catalogue import day_start_seconds
from tasks.export.history import scheduled_run_seconds

REPO = Path(__file__).resolve().parents[1]

MODEL = "diamonds-price"
# the series driftline pushes or backfills; Prometheus' own ALERTS series carry the same labels
GROUP = f'job="ml_monitoring",model="{MODEL}"'
SELECTOR = f'{{{GROUP},__name__=~"ml_.+|push_.+"}}'
EXCLUDED_HISTORY = frozenset({"ml_monitoring_run_duration_seconds"})
EXCLUDED_LIVE = EXCLUDED_HISTORY | {
    "ml_monitoring_last_success_timestamp_seconds",
    "push_time_seconds",
    "push_failure_time_seconds",
}
# relative weights of the faults drawn for a night
WEIGHTS = {
    "kill": 30,
    "pushgateway-down": 12,
    "prometheus-down": 8,
    "prefect-down": 8,
    "prefect-crash": 3,
    "lake-unreachable": 12,
    "batch-late": 12,
    "disk-full": 15,
}
OUTAGES = {"pushgateway-down", "prometheus-down", "prefect-down", "disk-full"}


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


# --- one world: a lake, a stack, its runs -------------------------------------------------------


@dataclass
class World:
    name: str
    root: Path
    lake: Path
    registry: Path
    config: stack.StackConfig
    env: dict[str, str] = field(default_factory=dict)

    def url(self, component: stack.Component) -> str:
        return self.config.url(component)

    def start(self, prefect_api: str) -> None:
        stack.up(self.config, timeout_seconds=180)
        prefect_home = self.root / "prefect-client"
        prefect_home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATA_LAKE_URI": str(self.lake),
            "MODEL_REGISTRY_URI": str(self.registry),
            "PUSHGATEWAY_URL": self.url("pushgateway"),
            "PROMETHEUS_URL": self.url("prometheus"),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(prefect_home),
            "DRIFTLINE_PUSH_RETRY_DELAYS": "0.5,1",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def stop_component(self, component: stack.Component, sig: signal.Signals) -> None:
        """Stop one component by the pid the stack recorded (it leads its own session)."""
        (found,) = [s for s in stack.status(self.config.state_dir) if s.name == component]
        if found.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(found.pid, sig)
        deadline = time.monotonic() + 30
        while processes.is_alive(found.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if processes.is_alive(found.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(found.pid, signal.SIGKILL)
            while processes.is_alive(found.pid):
                time.sleep(0.05)

    def start_stopped(self) -> None:
        """`driftline stack up` for what is not running. Its readiness wait can judge a process
        it has just started as not its own while /proc still shows the pre-exec argv (seen when
        one component alone is started); asked again, it finds the process and waits for it."""
        for attempt in range(5):
            try:
                stack.up(self.config, timeout_seconds=180)
                return
            except stack.StackError as error:
                if attempt == 4:
                    raise
                log(f"stack up: {str(error).splitlines()[0]}; asking again")
                time.sleep(1)

    def driftline(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.out").open("ab") as out, (logs / f"{name}.err").open("ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "driftline", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )

    def last_error(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.err"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        mine = [line for line in lines if line.startswith("driftline: error:")]
        return (mine or lines or [""])[-1][:300]


def finish(proc: subprocess.Popen[bytes], timeout: float = 900) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return -9


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- Prometheus -------------------------------------------------------------------------------


def prom_get(base: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def series_key(metric: dict[str, str]) -> str:
    labels = ",".join(f"{k}={v!r}" for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric['__name__']}{{{labels}}}"


def history_at(base: str, day: date) -> dict[str, str]:
    """The model's samples stamped exactly at the day's scheduled run time."""
    at = scheduled_run_seconds(day)
    data = prom_get(base, "/api/v1/query", {"query": f"{SELECTOR}[1ms]", "time": f"{at:.3f}"})
    found = {}
    for series in data["result"]:
        if series["metric"]["__name__"] in EXCLUDED_HISTORY:
            continue
        for t, value in series["values"]:
            if float(t) == at:
                found[series_key(series["metric"])] = value
    return found


def live_values(base: str) -> dict[str, str]:
    data = prom_get(base, "/api/v1/query", {"query": SELECTOR})
    return {
        series_key(s["metric"]): s["value"][1]
        for s in data["result"]
        if s["metric"]["__name__"] not in EXCLUDED_LIVE
    }


def wait_live_day(base: str, day: date, timeout: float = 120) -> None:
    """Until Prometheus has scraped the push of `day` (its batch timestamp)."""
    want = day_start_seconds(day)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            data = prom_get(
                base, "/api/v1/query", {"query": f"ml_batch_timestamp_seconds{{{GROUP}}}"}
            )
            if any(float(s["value"][1]) == want for s in data["result"]):
                return
        time.sleep(1)
    raise RuntimeError(f"{base} did not scrape the push of {day} within {timeout:.0f} s")


def wait_history(base: str, day: date, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError):
            if history_at(base, day):
                return
        time.sleep(1)


# --- the lake's small disk ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    size = f"size={max(size_bytes // 1024, 1024)}k"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"chaos: cannot mount a tmpfs on {directory} for the lake ({done.stderr.strip()}); "
            "run as root"
        )
    try:
        yield directory
    finally:
        for _ in range(10):
            if subprocess.run(["umount", str(directory)], check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Take all but `leave` bytes of the filesystem with one file."""
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(mount).free
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        if free - leave > 0:
            os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)


def free_disk(mount: Path) -> None:
    (mount / "filler").unlink(missing_ok=True)


def tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def lake_differences(a: Path, b: Path) -> list[str]:
    """Files present in one lake only or with different bytes; hidden files are not data."""
    ta = {k: v for k, v in tree(a).items() if not any(s.startswith(".") for s in k.split("/"))}
    tb = {k: v for k, v in tree(b).items() if not any(s.startswith(".") for s in k.split("/"))}
    out = [f"only in {a.name}: {k}" for k in sorted(ta.keys() - tb.keys())]
    out += [f"only in {b.name}: {k}" for k in sorted(tb.keys() - ta.keys())]
    out += [
        f"differs: {k}"
        for k in sorted(ta.keys() & tb.keys())
        if not filecmp.cmp(ta[k], tb[k], shallow=False)
    ]
    return out


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


def leftovers(lake: Path) -> list[str]:
    return [k for k in tree(lake) if any(s.startswith(".") for s in k.split("/"))]


# --- the year ------------------------------------------------------------------------------------


@dataclass
class Outage:
    kind: str
    first: date
    until: int  # index of the first day it no longer covers


@dataclass
class Chaos:
    args: argparse.Namespace
    work: Path
    days: list[date]
    rng: random.Random
    base: World
    chaos: World
    mount: Path
    faults: list[tuple[str, str]] = field(default_factory=list)  # (kind, when)
    missed: Counter[str] = field(default_factory=Counter)
    outcome: dict[date, int] = field(default_factory=dict)
    errors: dict[date, str] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)

    def fault(self, kind: str, when: str) -> None:
        self.faults.append((kind, when))
        log(f"fault {kind}: {when}")

    def typical_run_seconds(self) -> float:
        recent = sorted(self.durations[-15:])
        return recent[len(recent) // 2] if recent else 5.0

    # nightly runs ---------------------------------------------------------------------------
    def baseline_year(self) -> float:
        """The year without faults: every day replayed by `driftline backfill` (byte for byte the
        nightly run's result, tests/test_backfill.py) with its history, then the newest day's
        nightly run, whose push is the live state. Returns the backfill's duration."""
        took = self.backfill(self.base, faults=False, expected=0)
        newest = str(self.days[-1])
        rc = finish(self.base.driftline("monitor", "--date", newest, name=f"nightly-{newest}"))
        if rc != 0:
            raise RuntimeError(f"baseline: {self.base.last_error(f'nightly-{newest}')}")
        return took

    def chaos_year(self) -> None:
        active: list[Outage] = []
        allowed = set(self.args.kinds.split(",")) if self.args.kinds else set(WEIGHTS)
        kinds, weights = zip(*[(k, w) for k, w in WEIGHTS.items() if k in allowed], strict=True)
        for i, day in enumerate(self.days):
            for outage in [o for o in active if o.until <= i]:
                self.end_outage(outage)
                active.remove(outage)
            kind = None
            if self.rng.random() < self.args.fault_rate:
                kind = self.rng.choices(kinds, weights)[0]
                if kind in {o.kind for o in active} or (
                    kind == "prefect-crash" and "prefect-down" in {o.kind for o in active}
                ):
                    kind = "kill" if "kill" in allowed else None
            if kind in OUTAGES:
                span = self.rng.choice([1, 1, 2, 3])
                active.append(Outage(kind, day, min(i + span, len(self.days))))
                self.begin_outage(kind, day, span)
                kind = None
            self.outcome[day] = self.night(day, kind)
        for outage in active:
            self.end_outage(outage)

    def begin_outage(self, kind: str, day: date, span: int) -> None:
        if kind == "disk-full":
            leave = self.rng.choice([0, 2048, 4096, 6144, 12288])
            fill(self.mount, leave)
            self.fault(kind, f"{day}, {span} night(s), {leave} bytes left")
            return
        component: stack.Component = kind.split("-")[0]  # type: ignore[assignment]
        self.chaos.stop_component(component, signal.SIGTERM)
        self.fault(kind, f"{day}, {span} night(s)")

    def end_outage(self, outage: Outage) -> None:
        if outage.kind == "disk-full":
            free_disk(self.mount)
        else:
            self.chaos.start_stopped()
        log(f"end of {outage.kind} from {outage.first}")

    def night(self, day: date, kind: str | None) -> int:
        """Run the day's nightly run with an in-run fault (or none); its exit status."""
        name = f"{day}"
        restore: Callable[[], None] | None = None
        if kind == "lake-unreachable":
            away = self.chaos.lake.with_name("lake.unmounted")
            self.chaos.lake.rename(away)
            back_after = self.rng.uniform(1, 45)
            timer = threading.Timer(back_after, lambda: away.rename(self.chaos.lake))
            timer.start()
            self.fault(kind, f"{day}, the lake root gone for {back_after:.0f} s")

            def restore() -> None:
                timer.join()
                if away.exists() and not self.chaos.lake.exists():
                    away.rename(self.chaos.lake)

        elif kind == "batch-late":
            partition = self.chaos.lake / "scored" / f"model={MODEL}" / f"batch_date={day}"
            late = self.mount / "late" / partition.name
            late.parent.mkdir(exist_ok=True)
            partition.rename(late)
            self.fault(kind, f"{day}, the scored batch arrives after the run")

            def restore() -> None:
                late.rename(partition)

        started = time.monotonic()
        proc = self.chaos.driftline("monitor", "--date", str(day), name=name)
        if kind == "kill":
            at = self.rng.uniform(0.2, 1.1) * self.typical_run_seconds()
            try:
                proc.wait(timeout=at)
                self.missed[kind] += 1  # the run was done before the instant came
            except subprocess.TimeoutExpired:
                kill_group(proc)
                self.fault(kind, f"{day}, SIGKILL after {at:.1f} s")
        elif kind == "prefect-crash":
            at = self.rng.uniform(0.5, 1.0) * self.typical_run_seconds()
            try:
                proc.wait(timeout=at)
                self.missed[kind] += 1
            except subprocess.TimeoutExpired:
                self.chaos.stop_component("prefect", signal.SIGKILL)
                self.fault(kind, f"{day}, the Prefect server SIGKILLed {at:.1f} s into the run")
                self.chaos.start_stopped()  # back as soon as it starts
        rc = finish(proc)
        if restore is not None:
            restore()
        if rc == 0 and kind is None:
            self.durations.append(time.monotonic() - started)
        if rc != 0:
            self.errors[day] = self.chaos.last_error(name) or f"killed ({rc})"
        log(f"{self.chaos.name} {day}: exit {rc} {self.errors.get(day, '')[:160]}")
        return rc

    # recovery -------------------------------------------------------------------------------
    def recover(self) -> list[date]:
        """README, "Reliability": every failed day again, oldest first; the newest pushes."""
        failed = [d for d in self.days if self.outcome[d] != 0]
        newest = self.days[-1]
        for day in failed:
            args = ["monitor", "--date", str(day)] + ([] if day == newest else ["--no-push"])
            rc = finish(self.chaos.driftline(*args, name=f"recover-{day}"))
            if rc != 0:
                log(f"recovery of {day} failed: {self.chaos.last_error(f'recover-{day}')}")
        return failed

    def push_newest(self) -> None:
        """The newest night again when it failed: the Pushgateway's live state is that day's."""
        newest = self.days[-1]
        if self.outcome[newest] != 0:
            rc = finish(
                self.chaos.driftline("monitor", "--date", str(newest), name="recover-newest")
            )
            if rc != 0:
                log(f"the newest night failed again: {self.chaos.last_error('recover-newest')}")

    def backfill(self, world: World, *, faults: bool, expected: float) -> float:
        args = [
            "backfill",
            "--start", str(self.days[0]),
            "--end", str(self.days[-1]),
            "--prometheus-data", str(world.config.state_dir / "prometheus" / "data"),
        ]  # fmt: skip
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            name = f"backfill-{attempt}"
            if faults and attempt == 2:
                world.stop_component("prometheus", signal.SIGTERM)
                self.fault("prometheus-down", "during the history backfill")
            proc = world.driftline(*args, name=name)
            if faults and attempt == 1:
                at = self.rng.uniform(0.3, 0.9) * expected
                try:
                    proc.wait(timeout=at)
                    self.missed["backfill-kill"] += 1
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    self.fault("backfill-kill", f"SIGKILL {at:.0f} s into the history backfill")
            rc = finish(proc, timeout=3600)
            if faults and attempt == 2:
                world.start_stopped()
            log(f"{world.name} backfill attempt {attempt}: exit {rc} {world.last_error(name)}")
            if rc == 0 and not (faults and attempt < 2):
                break
            if attempt >= 6:
                raise RuntimeError(f"{world.name}: the backfill kept failing")
        took = time.monotonic() - started
        # Prometheus loads the new blocks when it restarts (or within a minute on its own)
        world.stop_component("prometheus", signal.SIGTERM)
        world.start_stopped()
        wait_history(world.url("prometheus"), self.days[-1])
        return took


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

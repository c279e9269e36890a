"""The year of nights under random faults, and the documented recovery after them."""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from driftline import stack
from scripts.faults.observe import fill, free_disk, wait_history
from scripts.faults.world import MODEL, OUTAGES, WEIGHTS, World, finish, kill_group, log

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

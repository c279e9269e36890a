"""CPU seconds of a whole process tree: this process's descendants, live or already reaped.

A live process's /proc stat holds its own CPU time and that of the children it has reaped
(cutime, cstime); a child this process reaped is in its own RUSAGE_CHILDREN. Summing both over
every live descendant counts each process once, whenever it ended, as long as every process of
the tree is reaped by a parent in it (servers run in the foreground here, never daemonised).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TreeCpu:
    """CPU seconds (user + system) at one moment."""

    tree: float  # every descendant of this process, live or reaped
    own: float  # this process itself (the script that submits and watches)
    # each live child of this process (a server, a worker) with its own descendants
    by_child: dict[str, float] = field(default_factory=dict)

    def __sub__(self, other: TreeCpu) -> TreeCpu:
        children = {
            name: seconds - other.by_child.get(name, 0.0) for name, seconds in self.by_child.items()
        }
        return TreeCpu(self.tree - other.tree, self.own - other.own, children)


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def _name(pid: int) -> str:
    """A child's program and its first distinguishing argument (`prefect server`, `worker-0`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [Path(a.decode(errors="replace")).name for a in argv if a]
    if "worker" in words and "--name" in words:
        return words[words.index("--name") + 1]
    program = next((w for w in words if not w.startswith(("setpriv", "-", "python"))), "?")
    return f"{program} {words[words.index(program) + 1]}" if program == "prefect" else program


def tree_cpu() -> TreeCpu:
    me = os.getpid()
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    by_child: dict[str, float] = {}
    for child in children.get(me, []):
        seconds = 0.0
        todo = [child]
        while todo:
            pid = todo.pop()
            seconds += stats[pid][1]
            todo += children.get(pid, [])
        name = _name(child)
        by_child[name] = by_child.get(name, 0.0) + seconds
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return TreeCpu(
        sum(by_child.values()) + reaped.ru_utime + reaped.ru_stime,
        own.ru_utime + own.ru_stime,
        by_child,
    )

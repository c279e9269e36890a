"""CPU seconds of a whole process tree: this process's descendants, live or already reaped.

A live process's /proc stat holds its own CPU time and that of the children it has reaped
(cutime, cstime); a child this process reaped is in its own RUSAGE_CHILDREN. Summing both over
every live descendant counts each process once, whenever it ended, as long as every process of
the tree is reaped by a parent in it (servers run in the foreground here, never daemonised).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TreeCpu:
    """CPU seconds (user + system) at one moment."""

    tree: float  # every descendant of this process, live or reaped
    own: float  # this process itself (the script that submits and watches)

    def __sub__(self, other: TreeCpu) -> TreeCpu:
        return TreeCpu(self.tree - other.tree, self.own - other.own)


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


def tree_cpu() -> TreeCpu:
    me = os.getpid()
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    live = 0.0
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        live += stats[pid][1]
        todo += children.get(pid, [])
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return TreeCpu(live + reaped.ru_utime + reaped.ru_stime, own.ru_utime + own.ru_stime)

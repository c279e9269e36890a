"""Arrays a thread reuses for a column's large temporaries, instead of fresh ones per column.

A fresh array of megabytes is memory the process has not touched yet: each 4 KiB page of it
costs a page fault on first use, which on a virtual machine, with the drift step's threads
faulting at once, costs more than the arithmetic done in it (docs/statistics.md). The drift
step's temporaries (bucket numbers widened for `take`, a look-up mask, a block of floats)
have the same sizes column after column, so each thread keeps one array per name and hands out
views of it. A view is valid until the same thread asks for the same name again: only for
temporaries that do not leave the function that asked. A thread's arrays go with it; they are
sized for one pass of tasks/stats/buckets.py, at most 1 MiB each.
"""

from __future__ import annotations

import threading

import numpy as np

_held = threading.local()


def scratch(name: str, size: int, dtype: type[np.generic]) -> np.ndarray:
    """This thread's array `name` as `size` values of `dtype`, its contents undefined."""
    held: np.ndarray | None = getattr(_held, name, None)
    if held is None or held.dtype != dtype or held.size < size:
        held = np.empty(size, dtype=dtype)
        setattr(_held, name, held)
    return held[:size]

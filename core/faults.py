"""Fault injection for the crash tests: inert unless `DRIFTLINE_FAULT_PAUSE_AT` is set.

`DRIFTLINE_FAULT_PAUSE_AT=<point>` makes a run stop at that point: it prints one line to stderr,
``driftline: fault injection: paused at <point> (pid N)``, and sleeps, so a test can kill the
process exactly there (tests/test_faults.py). The points, in the order a run passes them:

- ``load-batch``: the scored batch has been read, nothing written yet
- ``write-temp``: a result is fully written to its temporary name, not yet moved into place
- ``push``: the result is in the lake and the run holds the day's lock, the push has not started

Nothing else reads the variable; an unset or unknown point costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "DRIFTLINE_FAULT_PAUSE_AT"
POINTS = ("load-batch", "write-temp", "push")


def pause_point(point: str) -> None:
    """Sleep here (until killed) when the environment names this point."""
    if os.environ.get(ENV) != point:
        return
    print(f"driftline: fault injection: paused at {point} (pid {os.getpid()})", file=sys.stderr)
    sys.stderr.flush()
    while True:  # only a signal ends this; the test that set the variable sends it
        time.sleep(3600)

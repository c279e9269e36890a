"""The two kinds of failure the command line tells apart (docs/contract.md, "Command line").

`InputError` is bad usage or bad input: exit status 2 with one line that names the file, column
or value and what was expected. `RunError` is a run that could not complete (a batch that is not
there, a service that stayed down): exit status 1. Both carry the one-line message a person acts on.
"""


class DriftlineError(Exception):
    """Base of driftline's own errors; its message is the one line shown to the user."""

    exit_code = 1


class InputError(DriftlineError):
    """Bad usage or bad input: names the file, column or value and what was expected."""

    exit_code = 2


class RunError(DriftlineError):
    """The run failed for a reason outside the input (missing batch, service down)."""

    exit_code = 1


class UnknownModelError(InputError):
    """The registry holds no version of the model at all: a name mistyped, or never registered."""


class PushError(RunError):
    """The Pushgateway did not take the night's gauges (the day's result is saved in the lake)."""

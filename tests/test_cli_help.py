"""The command line explains itself: usage when called bare, every option's format and default."""

from __future__ import annotations

import argparse
import signal

import pytest

from driftline import cli
from driftline.cli import build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_bare_driftline_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: driftline")
    assert all(name in err for name in subcommands())


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_says_what_it_takes(name: str) -> None:
    for action in subcommands()[name]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"driftline {name} {action.option_strings[0]} has no help"
            takes_value = action.nargs != 0
            if takes_value and not action.required and action.default is not None:
                assert "default" in action.help, f"{name} {action.option_strings[0]}"


def test_a_usage_error_is_one_line_naming_the_command_and_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["monitor", "--date", "2026-13-01"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "driftline: error: argument --date: '2026-13-01' is not a date (expected YYYY-MM-DD) "
        "(see 'driftline monitor --help')\n"
    )


def _policy_that_is_interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C where a library catches KeyboardInterrupt and raises its own error (pydantic does,
    inside a serializer), as Prefect's settings can be when the signal lands there."""
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt as interrupt:
        raise ValueError(f"Error calling function `_ser_model`: {interrupt!r}") from None
    raise AssertionError("SIGINT raised no KeyboardInterrupt")


def _policy_that_fails(args: argparse.Namespace) -> int:
    raise ValueError("Error calling function `_ser_model`")


def test_ctrl_c_is_exit_130_even_when_the_code_it_stopped_raised_something_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "policy", _policy_that_is_interrupted)
    assert main(["policy", "show"]) == 130
    assert capsys.readouterr().err == ""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's, restored
    # the same error without Ctrl-C is a failed run
    monkeypatch.setitem(cli.COMMANDS, "policy", _policy_that_fails)
    assert main(["policy", "show"]) == 1
    assert "the run failed: ValueError" in capsys.readouterr().err

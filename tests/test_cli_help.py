"""The command line explains itself: usage when called bare, every option's format and default."""

from __future__ import annotations

import argparse

import pytest

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

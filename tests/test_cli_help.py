"""Every subcommand's ``--help`` explains every option and shows an example.

The parsers are caught as each command builds them (``CommandParser.parse_known_args`` is
stopped before it reads anything), so the check covers each parser as the command really
builds it, with nothing started.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

import pytest

from mockllm.cliargs import CommandParser
from streamharness import cli


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
    raise _Built(self)


def _parser_of(command: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    monkeypatch.setattr(CommandParser, "parse_known_args", _stop)
    with pytest.raises(_Built) as built:
        cli.main(command.split())
    return built.value.parser


COMMANDS = [n for n in cli.SUBCOMMANDS if n != "bench"] + [f"bench {b}" for b in cli.BENCHES]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_the_help_has_an_example(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = _parser_of(command, monkeypatch)
    # help=argparse.SUPPRESS is a deliberate choice (an internal option), not a forgotten help.
    bare = ["/".join(a.option_strings) or a.dest for a in parser._actions if not a.help]
    assert bare == [], f"{command}: options without help text: {bare}"
    assert parser.epilog and "Examples:" in parser.epilog, f"{command}: no Examples: in --help"
    example_lines = parser.epilog.split("Examples:", 1)[1].splitlines()
    assert any(f"streamharness {command.split()[0]}" in line for line in example_lines)
    # RawDescriptionHelpFormatter: the examples keep their lines in the printed help
    assert parser.formatter_class is argparse.RawDescriptionHelpFormatter


@pytest.mark.parametrize("command", ["load", "list", "replay"])
def test_options_with_a_default_say_it(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _parser_of(command, monkeypatch)
    silent = [
        "/".join(a.option_strings)
        for a in parser._actions
        if a.option_strings
        and a.default not in (None, False, [], argparse.SUPPRESS)
        and "default" not in (a.help or "")
    ]
    assert silent == [], f"{command}: options whose help hides their default: {silent}"

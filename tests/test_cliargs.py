"""The conventions every subcommand shares (``mockllm.cliargs``), on each server's own parser."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mockllm.cliargs import CommandParser, port


def test_one_line_errors_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    parser = CommandParser(prog="streamharness demo")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--port", type=port)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--sede", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "streamharness demo: error: unrecognized arguments: --sede 3 "
        "(--sede: did you mean --seed?) (see --help)\n"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--port", "99999"])
    assert capsys.readouterr().err == (
        "streamharness demo: error: argument --port: must be 0-65535 (0 picks a free port), "
        "got 99999 (see --help)\n"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--zzz"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess


@pytest.mark.parametrize("command", ["mock", "server", "proxy"])
def test_every_server_command_words_a_bad_port_the_same(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamharness.cli", command, "--port", "99999"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"streamharness {command}: error: argument --port: must be 0-65535 "
        "(0 picks a free port), got 99999 (see --help)\n"
    )

"""The top-level ``streamharness`` dispatcher."""

from __future__ import annotations

import pytest

from streamharness import cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_bench_unknown_help_and_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "warp"]) == 2
    assert "unknown benchmark 'warp'" in capsys.readouterr().err
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.BENCHES)
    assert cli.main(["bench"]) == 2
    capsys.readouterr()
    assert cli.main(["bench", "capacity", "--rates", "fast"]) == 2
    assert "rates are comma-separated numbers" in capsys.readouterr().err


def test_a_mistyped_command_or_benchmark_gets_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["rnu"]) == 2
    assert "unknown command 'rnu' (did you mean 'run'?)" in capsys.readouterr().err
    assert cli.main(["bench", "soka"]) == 2
    assert "unknown benchmark 'soka' (did you mean 'soak'?)" in capsys.readouterr().err

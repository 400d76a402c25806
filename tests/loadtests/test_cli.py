"""Bad arguments to ``streamharness load`` / ``bench`` give clear errors (no Locust started)."""

from __future__ import annotations

import pytest

from loadtests.cli import bench_main, load_main, parse_duration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "--users: must be at least 1"),
        (["--users", "many"], "--users: expected a whole number"),
        (["--duration", "soon"], "invalid duration 'soon'"),
        (["--duration", "0s"], "duration must be positive"),
        (["--target", "ftp://x"], "target must be an http:// or https:// URL"),
        (["--transport", "pigeon"], "invalid choice: 'pigeon'"),
        (["--shape", "zigzag"], "invalid choice: 'zigzag'"),
        (["--max-error-rate", "2"], "must be a share between 0 and 1"),
        (["--ttft-p95-ms", "-5"], "must be >= 0"),
        (["--think-time", "3:1"], "think time needs 0 <= MIN <= MAX"),
        (["--spawn-rate", "0"], "must be > 0"),
        (["--transport", "tutorial", "--drop-rate", "0.5"], "--drop-rate needs a resumable"),
        (["--transport", "blocking", "--cancel-rate", "0.5"], "--cancel-rate needs a cancellable"),
        (["--cancel-rate", "0.7", "--drop-rate", "0.7"], "must not exceed 1"),
    ],
)
def test_bad_load_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30), ("30s", 30), ("2m", 120), ("1m30s", 90), ("1h", 3600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bench_unknown_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["warp"]) == 2
    assert "unknown benchmark 'warp'" in capsys.readouterr().err
    assert bench_main(["--help"]) == 0
    assert "transports" in capsys.readouterr().out
    assert bench_main(["capacity", "--rates", "fast"]) == 2
    assert "rates are comma-separated numbers" in capsys.readouterr().err

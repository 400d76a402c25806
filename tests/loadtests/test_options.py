"""The option table generates both parsers and UserOptions, and they agree with each other."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

import pytest

from loadtests.cli import build_load_parser, locust_command
from loadtests.options import OPTIONS, UserOptions, add_locust_arguments

# Every flag `streamharness load` had before the table: none may disappear.
LOAD_FLAGS = [
    "--target", "--users", "--spawn-rate", "--duration", "--shape", "--transport",
    "--target-profile", "--header", "--processes", "--out", "--report", "--no-report",
    "--mock-profile", "--locust-arg",
    "--prompt", "--model", "--max-tokens", "--think-time", "--cancel-rate", "--drop-rate",
    "--interrupt-after", "--poll-interval", "--stream-timeout", "--seed", "--slo-ttft-ms",
    "--slo-tpot-ms", "--slo-e2e-ms", "--max-error-rate", "--min-goodput",
]  # fmt: skip
LOCUST_FLAGS = [
    "prompt", "model", "max-tokens", "extra-body", "think-min", "think-max", "cancel-rate",
    "drop-rate", "interrupt-after", "poll-interval", "stream-timeout", "seed", "target-profile",
    "header", "shape", "probe-lag", "user-stamps", "metrics-out", "quiet",
]  # fmt: skip


def _locust_parser() -> argparse.ArgumentParser:
    # Locust's own parser is configargparse (an argparse subclass); importing it here would
    # monkey-patch this test process with gevent.
    parser = argparse.ArgumentParser()
    add_locust_arguments(parser)
    return parser


def test_user_options_fields_are_the_user_rows() -> None:
    fields = [f.name for f in dataclasses.fields(UserOptions)]
    assert fields == [o.name for o in OPTIONS if o.user]


def test_load_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    build_load_parser().print_help()
    text = capsys.readouterr().out
    assert [f for f in LOAD_FLAGS if f not in text] == []


def test_locust_parser_has_every_sh_flag_and_its_old_default() -> None:
    parser = _locust_parser()
    text = parser.format_help()
    assert [f for f in LOCUST_FLAGS if f"--sh-{f}" not in text] == []
    parsed = parser.parse_args([])
    assert (parsed.sh_prompt, parsed.sh_shape, parsed.sh_metrics_out, parsed.sh_quiet) == (
        "Tell me a story.",
        "constant",
        "",
        False,
    )


def test_defaults_are_the_same_everywhere() -> None:
    expected = UserOptions(
        prompt="Tell me a story.", model="", max_tokens=None, extra_body="", think_min_s=0.5,
        think_max_s=2.0, cancel_rate=0.0, drop_rate=0.0, interrupt_after=3, poll_interval_s=1.0,
        stream_timeout_s=60.0, seed=0, target_profile="tutorial", headers=(), probe_lag=False,
        user_stamps=False,
    )  # fmt: skip
    assert UserOptions.from_parsed(None) == expected
    assert UserOptions.from_parsed(_locust_parser().parse_args([])) == expected
    load = build_load_parser().parse_args([])
    assert load.think_time == (0.5, 2.0)
    assert (load.prompt, load.model, load.max_tokens, load.cancel_rate, load.drop_rate) == (
        "Tell me a story.", "", None, 0.0, 0.0,
    )  # fmt: skip
    assert (load.interrupt_after, load.poll_interval, load.stream_timeout, load.seed) == (
        3, 1.0, 60.0, 0,
    )  # fmt: skip
    assert load.shape == "constant"
    assert expected.kernel_stamps


def test_load_arguments_reach_the_users_unchanged() -> None:
    argv = [
        "--target", "http://127.0.0.1:1", "--prompt", "hi there", "--model", "m",
        "--max-tokens", "7", "--think-time", "0.25:1.5", "--cancel-rate", "0.2",
        "--drop-rate", "0.1", "--interrupt-after", "4", "--poll-interval", "0.5",
        "--stream-timeout", "9", "--seed", "11", "--shape", "ramp",
    ]  # fmt: skip
    args = build_load_parser().parse_args(argv)
    cmd = locust_command(args, "http://127.0.0.1:1", Path("m.json"), Path("p"))
    sh = [a for i, a in enumerate(cmd) if a.startswith("--sh-") or cmd[i - 1].startswith("--sh-")]
    parsed = _locust_parser().parse_args(sh)
    assert parsed.sh_shape == "ramp"
    assert parsed.sh_quiet and parsed.sh_metrics_out == "m.json"
    got = UserOptions.from_parsed(parsed)
    assert dataclasses.replace(got, prompt="x") == dataclasses.replace(
        UserOptions.from_parsed(None),
        prompt="x", model="m", max_tokens=7, think_min_s=0.25, think_max_s=1.5, cancel_rate=0.2,
        drop_rate=0.1, interrupt_after=4, poll_interval_s=0.5, stream_timeout_s=9.0, seed=11,
    )  # fmt: skip
    assert got.prompt == "hi there"
    assert got.request_fields() == {"model": "m", "max_tokens": 7}
    # An unset --max-tokens is not sent at all (Locust's own default: none).
    unset = locust_command(build_load_parser().parse_args([]), "h", Path("m"), Path("p"))
    assert "--sh-max-tokens" not in unset
    assert shlex.join(unset)  # every element is text


def test_locust_switches_and_repeats() -> None:
    parsed = _locust_parser().parse_args(
        ["--sh-user-stamps", "--sh-probe-lag", "--sh-header", "A: 1", "--sh-header", "B:two"]
    )
    got = UserOptions.from_parsed(parsed)
    assert got.headers == (("A", "1"), ("B", "two"))
    assert got.probe_lag and got.user_stamps and not got.kernel_stamps
    # argparse appends to a copy: a second parse starts from no headers again.
    assert UserOptions.from_parsed(_locust_parser().parse_args([])).headers == ()


def test_locust_refuses_what_load_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _locust_parser().parse_args(["--sh-cancel-rate", "2"])
    assert "must be a share between 0 and 1" in capsys.readouterr().err


def test_text_from_locusts_web_ui_is_converted() -> None:
    # The web UI hands over text for an option whose default is None or a list.
    parsed = argparse.Namespace(sh_max_tokens="12", sh_header=["X: y"])
    got = UserOptions.from_parsed(parsed)
    assert got.max_tokens == 12
    assert got.headers == (("X", "y"),)
    assert UserOptions.from_parsed(argparse.Namespace(sh_max_tokens="")).max_tokens is None

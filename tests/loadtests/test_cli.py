"""Bad arguments to ``streamharness load`` / ``bench`` give clear errors (no Locust started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import cli
from loadtests.cli import (
    build_load_parser,
    load_main,
    locust_command,
    master_port_args,
    parse_duration,
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "--users: must be at least 1"),
        (["--users", "many"], "--users: expected a whole number"),
        (["--duration", "soon"], "invalid duration 'soon'"),
        (["--duration", "0s"], "duration must be positive"),
        (["--target", "ftp://x"], "target must be an http(s):// or ws(s):// URL"),
        (["--transport", "pigeon"], "invalid choice: 'pigeon'"),
        (["--shape", "zigzag"], "invalid choice: 'zigzag'"),
        (["--max-error-rate", "2"], "must be a share between 0 and 1"),
        (["--ttft-p95-ms", "-5"], "must be >= 0"),
        (["--think-time", "3:1"], "think time needs 0 <= MIN <= MAX"),
        (["--spawn-rate", "0"], "must be > 0"),
        (["--transport", "tutorial", "--drop-rate", "0.5"], "--drop-rate needs a resumable"),
        (["--transport", "blocking", "--cancel-rate", "0.5"], "--cancel-rate needs a cancellable"),
        (["--cancel-rate", "0.7", "--drop-rate", "0.7"], "must not exceed 1"),
        (["--server-workers", "0"], "--server-workers: must be at least 1"),
        (["--store", "disk"], "invalid choice: 'disk'"),
        (["--server-workers", "2", "--store", "memory"], "--store memory would lose every resume"),
        (
            ["--target", "http://127.0.0.1:9", "--server-workers", "2"],
            "drop them, or drop --target",
        ),
        (["--target", "http://127.0.0.1:9", "--store", "redis"], "drop them, or drop --target"),
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


def _fixed_port() -> int:
    return 40123


@pytest.mark.parametrize(
    ("processes", "extra", "expected"),
    [
        (1, [], []),
        (
            2,
            [],
            ["--master-bind-host", "127.0.0.1", "--master-bind-port", "40123",
             "--master-host", "127.0.0.1", "--master-port", "40123"],
        ),
        # the user's own port (either spelling) is kept, and the workers follow it
        (
            3,
            ["--master-bind-port", "6000"],
            ["--master-bind-host", "127.0.0.1", "--master-host", "127.0.0.1",
             "--master-port", "6000"],
        ),
        (
            2,
            ["--master-bind-port=6000", "--master-port=6000", "--master-bind-host=0.0.0.0"],
            ["--master-host", "127.0.0.1"],
        ),
        (
            2,
            ["--master-port", "6001"],
            ["--master-bind-host", "127.0.0.1", "--master-bind-port", "6001",
             "--master-host", "127.0.0.1"],
        ),
        # a master for external workers: its own port, no worker options
        (1, ["--master"], ["--master-bind-host", "127.0.0.1", "--master-bind-port", "40123"]),
        (1, ["--worker", "--master-host", "h"], []),
    ],
)  # fmt: skip
def test_master_port_args(processes: int, extra: list[str], expected: list[str]) -> None:
    assert master_port_args(processes, extra, pick_port=_fixed_port) == expected


def test_multi_process_locust_command_gets_its_own_master_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not Locust's fixed default 5557, which a concurrent run may hold (its workers would then
    # join the other run's master); the same port for the master's bind and the workers.
    ports = iter([40001, 40002])
    monkeypatch.setattr(cli, "free_port", lambda host="127.0.0.1": next(ports))
    args = build_load_parser().parse_args(["--processes", "2", "--target", "http://127.0.0.1:1"])
    first = locust_command(args, "http://127.0.0.1:1", Path("m.json"), Path("p"))
    second = locust_command(args, "http://127.0.0.1:1", Path("m.json"), Path("p"))
    for cmd, port in ((first, "40001"), (second, "40002")):
        assert cmd[cmd.index("--master-bind-host") + 1] == "127.0.0.1"
        assert cmd[cmd.index("--master-bind-port") + 1] == port
        assert cmd[cmd.index("--master-port") + 1] == port
    single = build_load_parser().parse_args(["--target", "http://127.0.0.1:1"])
    assert "--master-bind-port" not in locust_command(single, "h", Path("m"), Path("p"))


def test_locust_writes_its_own_html_report_where_asked() -> None:
    args = build_load_parser().parse_args(["--target", "http://127.0.0.1:1"])
    cmd = locust_command(args, "h", Path("m"), Path("p"), Path("out/locust.html"))
    assert cmd[cmd.index("--html") + 1] == "out/locust.html"
    assert "--html" not in locust_command(args, "h", Path("m"), Path("p"))


def test_out_is_an_alias_of_report_and_excludes_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_load_parser().parse_args(["--out", "x"]).out == Path("x")
    assert load_main(["--out", "x", "--report", "y"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert load_main(["--out", "x", "--no-report"]) == 2


@pytest.mark.parametrize(("missing", "needed"), [("nginx", "nginx"), ("redis", "redis-server")])
def test_server_workers_without_nginx_or_redis_exit_2_naming_it(
    missing: str, needed: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scenarios.stack import nginx, redis

    def absent(binary: str | None = None) -> str:
        if missing == "nginx":
            raise nginx.NginxUnavailable("nginx is not installed")
        raise redis.RedisUnavailable("redis-server is not installed")

    monkeypatch.setattr(nginx if missing == "nginx" else redis, f"find_{missing}", absent)
    assert load_main(["--server-workers", "2", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert needed in err and "needed by --server-workers 2 --store redis" in err

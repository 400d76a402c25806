"""``streamharness proxy list|inspect|create|delete|toggle|toxic``: toxiproxy-cli's commands.

The tables are pure functions, checked on values; the commands run against the session's
embedded server (a real process) or ``--toxiproxy-url``, and one through ``python -m`` as a
user runs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from scenarios.faultproxy.client import ProxyInfo, RunningServer, ToxicInfo, ToxiproxyClient
from scenarios.faultproxy.ctl import format_inspect, format_list
from streamharness import cli
from tests.scenarios.faultproxy.helpers import EchoServer, median_roundtrip_ms

Run = Callable[..., tuple[int, str, str]]

LATENCY = ToxicInfo("slow", "latency", "downstream", 1.0, {"latency": 100, "jitter": 10})
RESET = ToxicInfo("flaky", "reset_peer", "upstream", 0.5, {"timeout": 500})


def test_list_is_a_table_sorted_by_name() -> None:
    proxies = [
        ProxyInfo("web", "127.0.0.1:9002", "127.0.0.1:80", False),
        ProxyInfo("llm", "127.0.0.1:9001", "127.0.0.1:9000", True, (LATENCY, RESET)),
    ]
    assert format_list(proxies).splitlines() == [
        "Name  Listen          Upstream        Enabled   Toxics",
        "====  ==============  ==============  ========  ======",
        "llm   127.0.0.1:9001  127.0.0.1:9000  enabled   2",
        "web   127.0.0.1:9002  127.0.0.1:80    disabled  None",
        "",
        "Hint: inspect toxics with `streamharness proxy inspect <proxyName>`",
    ]
    assert format_list([]).startswith("no proxies\n")


def test_inspect_lists_toxics_by_stream() -> None:
    proxy = ProxyInfo("llm", "127.0.0.1:9001", "127.0.0.1:9000", True, (LATENCY, RESET))
    assert format_inspect(proxy).splitlines() == [
        "Name: llm  Listen: 127.0.0.1:9001  Upstream: 127.0.0.1:9000  enabled",
        "=" * 70,
        "Upstream toxics:",
        "flaky:  type=reset_peer  stream=upstream  toxicity=0.50  attributes=[ timeout=500 ]",
        "",
        "Downstream toxics:",
        "slow:  type=latency  stream=downstream  toxicity=1.00  "
        "attributes=[ jitter=10 latency=100 ]",
        "",
        "Hint: add a toxic with `streamharness proxy toxic add`",
    ]
    bare = ProxyInfo("llm", "127.0.0.1:9001", "127.0.0.1:9000", True)
    assert "Proxy has no toxics enabled." in format_inspect(bare)


@pytest.fixture
def run(
    toxiproxy_server: RunningServer, api: ToxiproxyClient, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``streamharness proxy ARGS --api URL`` in this process: (exit status, stdout, stderr)."""

    def run_(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli.main(["proxy", *args, "--api", toxiproxy_server.url])
        except SystemExit as exc:  # argparse ends a usage error so, as the command does
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run_


@pytest.mark.integration
def test_create_add_inspect_remove_delete(
    run: Run, api: ToxiproxyClient, echo: EchoServer, connect: Callable[[int], socket.socket]
) -> None:
    code, out, _ = run("create", "-l", "127.0.0.1:0", "-u", echo.address, "llm")
    assert code == 0 and out.startswith("Created new proxy llm (listening on 127.0.0.1:")
    port = api.get_proxy("llm").port
    base_ms = median_roundtrip_ms(connect(port))

    code, out, _ = run("toxic", "add", "-t", "latency", "-a", "latency=100", "llm")
    assert (code, out) == (
        0,
        "Added downstream latency toxic 'latency_downstream' on proxy 'llm'\n",
    )
    # The toxic is real: a round trip through the proxy now takes 100 ms more.
    assert 80 <= median_roundtrip_ms(connect(port)) - base_ms <= 400
    code, out, _ = run(
        "t", "a", "-t", "bandwidth", "-a", "rate=1000", "-u", "--toxicity", "0.5", "-n", "bw",
        "llm",
    )  # fmt: skip
    assert code == 0
    assert api.get_toxic("llm", "bw") == ToxicInfo(
        "bw", "bandwidth", "upstream", 0.5, {"rate": 1000}
    )

    code, out, _ = run("list")
    assert code == 0
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["Name", "Listen", "Upstream", "Enabled", "Toxics"]
    assert row.split() == ["llm", f"127.0.0.1:{port}", echo.address, "enabled", "2"]

    code, out, _ = run("inspect", "llm")
    assert code == 0
    assert "latency_downstream:  type=latency  stream=downstream  toxicity=1.00" in out
    assert "bw:  type=bandwidth  stream=upstream  toxicity=0.50  attributes=[ rate=1000 ]" in out

    code, out, _ = run("toxic", "update", "-n", "latency_downstream", "-a", "latency=5", "llm")
    assert code == 0 and api.get_toxic("llm", "latency_downstream").attributes["latency"] == 5

    code, out, _ = run("toxic", "remove", "-n", "bw", "llm")
    assert (code, out) == (0, "Removed toxic 'bw' on proxy 'llm'\n")
    assert [t.name for t in api.toxics("llm")] == ["latency_downstream"]

    assert run("toggle", "llm")[:2] == (0, "Proxy llm is now disabled\n")
    assert api.get_proxy("llm").enabled is False
    assert run("tog", "llm")[:2] == (0, "Proxy llm is now enabled\n")

    assert run("delete", "llm")[:2] == (0, "Deleted proxy llm\n")
    assert api.proxies() == {}


@pytest.mark.integration
def test_api_errors_are_one_line_and_exit_1(run: Run, api: ToxiproxyClient) -> None:
    code, out, err = run("inspect", "nope")
    assert (code, out) == (1, "")
    assert err == "streamharness proxy: error: cannot inspect proxy 'nope': proxy not found\n"
    api.create_proxy("llm", upstream="127.0.0.1:9")
    code, _, err = run("toxic", "remove", "-n", "ghost", "llm")
    assert code == 1
    assert err == (
        "streamharness proxy: error: cannot remove toxic 'ghost' of proxy 'llm': toxic not found\n"
    )
    code, _, err = run("toxic", "add", "-t", "bogus", "llm")
    assert code == 1 and err.count("\n") == 1 and "cannot add a bogus toxic" in err
    assert api.toxics("llm") == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["toxic", "add", "-t", "latency", "-a", "latency=abc", "p"], "expected KEY=INTEGER"),
        (["toxic", "add", "-t", "latency", "-u", "-d", "p"], "not allowed with argument"),
        (["toxic", "add", "-t", "latency", "--toxicity", "2", "p"], "must be a number from 0"),
        (["toxic", "remove", "p"], "the following arguments are required: -n"),
        (["create", "-u", "127.0.0.1:9", "p"], "the following arguments are required: -l"),
        (["inspect"], "the following arguments are required: PROXY"),
    ],
)
def test_usage_errors_exit_2_and_change_nothing(
    run: Run, api: ToxiproxyClient, args: list[str], says: str
) -> None:
    api.create_proxy("p", upstream="127.0.0.1:9")
    code, out, err = run(*args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and says in err and err.endswith("(see --help)\n")
    assert api.toxics("p") == [] and list(api.proxies()) == ["p"]


@pytest.mark.integration
def test_no_server_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    from mockllm.childproc import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["proxy", "list", "--api", url]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"streamharness proxy: error: cannot list proxies: no Toxiproxy API answers at {url} "
        "(Connection refused); start one with 'streamharness proxy', or name it with "
        "--api URL or TOXIPROXY_URL\n"
    )


@pytest.mark.integration
def test_toxiproxy_url_names_the_server(
    toxiproxy_server: RunningServer, api: ToxiproxyClient
) -> None:
    api.create_proxy("from-env", upstream="127.0.0.1:9")
    env = {**os.environ, "TOXIPROXY_URL": toxiproxy_server.url}
    done = subprocess.run(
        [sys.executable, "-m", "scenarios.faultproxy", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].split()[0] == "from-env"


@pytest.mark.integration
def test_serve_starts_the_server_as_no_command_does() -> None:
    from mockllm.childproc import start_child

    child = start_child(
        [sys.executable, "-m", "scenarios.faultproxy", "serve", "--port", "0", "--seed", "3"]
    )
    try:
        assert ToxiproxyClient(child.url).proxies() == {}
    finally:
        child.stop()


@pytest.mark.parametrize(
    ("word", "says"), [("lst", "did you mean list?"), ("zzz", "commands: serve, list")]
)
def test_a_mistyped_command_is_named(
    word: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["proxy", word]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamharness proxy: error: unknown command {word!r} (")
    assert says in err and err.endswith("(see --help)\n") and err.count("\n") == 1

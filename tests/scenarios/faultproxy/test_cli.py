"""``streamharness proxy`` / ``python -m scenarios.faultproxy`` as a process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mockllm.childproc import Child, start_child
from streamharness import cli
from tests.scenarios.faultproxy.helpers import (
    EchoServer,
    assert_added_latency,
    median_roundtrip_ms,
    read_until_closed,
)

pytestmark = pytest.mark.integration


def start(*args: str) -> Child:
    return start_child([sys.executable, "-m", "scenarios.faultproxy", "--port", "0", *args])


@pytest.fixture
def procs() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for proxy in started:
        proxy.stop()


def test_prints_one_line_and_exits_0_on_sigterm(procs: list[Child]) -> None:
    proxy = start("--seed", "3")
    procs.append(proxy)
    url = proxy.url
    assert proxy.output[0] == f"faultproxy listening on {url}\n"
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{url}/version").status_code == 200
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0


def test_config_file_populates_at_start(tmp_path: Path, procs: list[Child]) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps(
            [
                {"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"},
                {"name": "b", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0", "enabled": False},
            ]
        )
    )
    proxy = start("--config", str(config))
    procs.append(proxy)
    url = proxy.url
    proxies = httpx.get(f"{url}/proxies").json()
    assert set(proxies) == {"a", "b"}
    assert proxies["b"]["enabled"] is False
    port = int(proxies["a"]["listen"].rpartition(":")[2])
    proxy.proc.send_signal(signal.SIGINT)
    assert proxy.proc.wait(10) == 0
    # The proxies' listeners went away with the process.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.faultproxy", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    """argparse style: exit 2 and a single ``streamharness proxy: error: ...`` line."""
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("streamharness proxy: error: "), lines
    assert message in lines[0], lines


CONFIG_ITEM = '{"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"}'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"name": "a"}]', "missing required field: upstream at proxy 1"),
        ("{nope", "is not JSON"),
        ('[{"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:99999"}]', "0-65535"),
        ('[{"name": "a", "upstream": "127.0.0.1:9", "listen": "bad:x:y"}]', "too many colons"),
        ('[{"name": "\\ud800", "upstream": "127.0.0.1:9"}]', "surrogate"),
        (b"[\xff]", "is not JSON"),
        (f"[{CONFIG_ITEM}, {CONFIG_ITEM}]", "duplicate proxy name"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, content: str | bytes, message: str) -> None:
    config = tmp_path / "proxies.json"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    assert_one_line_error(run("--port", "0", "--config", str(config)), message)


def test_config_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    assert_one_line_error(run("--config", str(tmp_path / "missing.json")), "cannot read --config")
    assert_one_line_error(run("--config", str(tmp_path)), "cannot read --config")


def test_config_onto_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        config = tmp_path / "proxies.json"
        config.write_text(
            json.dumps([{"name": "a", "upstream": "h:1", "listen": f"127.0.0.1:{port}"}])
        )
        done = run("--port", "0", "--config", str(config))
    assert_one_line_error(done, "address already in use")


def test_api_port_in_use_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run("--port", str(port))
    # The same words as ``streamharness mock`` for the same problem.
    assert_one_line_error(done, f"cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "--port"),
        (["--port", "65536"], "0-65535"),
        (["--port", "-1"], "0-65535"),
        (["--port", "eighty"], "--port"),
        (["--host", "nosuchhost.invalid", "--port", "0"], "cannot listen on nosuchhost.invalid:0"),
        (["--host", "192.0.2.1", "--port", "0"], "cannot listen on 192.0.2.1:0"),
        (["--host", "bad:host:x", "--port", "0"], "cannot listen on bad:host:x:0"),
        (["--seed", "one"], "--seed"),
        (["--loop", "trio"], "--loop"),
        (["--log-level", "loud"], "--log-level"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    assert_one_line_error(run(*args), message)


def test_dispatcher_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["proxy", "--help"])
    assert exited.value.code == 0
    assert "--seed" in capsys.readouterr().out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_each_event_loop_delays_and_resets(
    loop: str,
    procs: list[Child],
    echo: EchoServer,
    connect: Callable[[int], socket.socket],
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    proxy = start("--loop", loop)
    procs.append(proxy)
    url = proxy.url
    body = {"name": "l", "listen": "127.0.0.1:0", "upstream": echo.address}
    created = httpx.post(f"{url}/proxies", json=body)
    assert created.status_code == 201, created.text
    port = int(created.json()["listen"].rpartition(":")[2])
    sock = connect(port)
    base = median_roundtrip_ms(sock)
    toxic = {"type": "latency", "attributes": {"latency": 40}}
    assert httpx.post(f"{url}/proxies/l/toxics", json=toxic).status_code == 200
    assert_added_latency(median_roundtrip_ms(sock), base, 40)
    reset = {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}
    assert httpx.post(f"{url}/proxies/l/toxics", json=reset).status_code == 200
    fresh = connect(port)
    fresh.sendall(b"x")
    assert read_until_closed(fresh) == (b"", "reset")
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0

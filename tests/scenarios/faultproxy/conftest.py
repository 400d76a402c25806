"""Fixtures of the fault proxy tests.

The conformance tests talk HTTP and TCP only. They run against the embedded server (a real
``python -m scenarios.faultproxy`` process, one per session) unless ``--toxiproxy-url`` or
``TOXIPROXY_URL`` names another Toxiproxy-compatible server. Upstreams are real TCP servers
on 127.0.0.1 in threads, stopped at teardown.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from scenarios.faultproxy.client import (
    RunningServer,
    ServerChoice,
    ToxiproxyClient,
    start_server,
)
from tests.scenarios.faultproxy.helpers import EchoServer

#: The embedded server of the session runs with this seed.
SESSION_SEED = 1234


def _external_url(config: pytest.Config) -> str | None:
    url = config.getoption("--toxiproxy-url") or os.environ.get("TOXIPROXY_URL")
    return url.rstrip("/") if url else None


@pytest.fixture(scope="session")
def toxiproxy_server(pytestconfig: pytest.Config) -> Iterator[RunningServer]:
    url = _external_url(pytestconfig)
    choice = ServerChoice(url=url) if url else ServerChoice()
    with start_server(SESSION_SEED, choice=choice) as server:
        yield server


@pytest.fixture
def embedded_only(toxiproxy_server: RunningServer) -> None:
    """Skip behaviour the real Toxiproxy does not have (seeds, our 400s for crashing input)."""
    if toxiproxy_server.kind != "embedded":
        pytest.skip("checks a streamharness extension, not Toxiproxy behaviour")


@pytest.fixture
def api(toxiproxy_server: RunningServer) -> Iterator[ToxiproxyClient]:
    """Our client; every proxy is deleted after the test so tests stay independent."""
    client = toxiproxy_server.client(timeout=10.0)
    yield client
    for name in client.proxies():
        client.delete_proxy(name)


@pytest.fixture
def http(toxiproxy_server: RunningServer, api: ToxiproxyClient) -> Iterator[httpx.Client]:
    """Raw HTTP to the API (for status codes and bodies exactly as sent)."""
    with httpx.Client(base_url=toxiproxy_server.url, timeout=10.0) as client:
        yield client


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def connect() -> Iterator[Callable[[int], socket.socket]]:
    """Open client sockets to a proxy port; all closed at teardown."""
    opened: list[socket.socket] = []

    def open_(port: int, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
        return sock

    yield open_
    for sock in opened:
        sock.close()

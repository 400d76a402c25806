"""Clients against the server: ``toxiproxy-python`` unmodified, and our client layer."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound as TpNotFound
from toxiproxy.exceptions import ProxyExists

from scenarios.faultproxy.client import (
    RunningServer,
    ServerChoice,
    ToxiproxyClient,
    server_from_env,
    start_server,
)
from scenarios.faultproxy.errors import (
    AlreadyExists,
    ApiError,
    FaultProxyError,
    NotFound,
    ServerUnavailable,
)
from tests.scenarios.faultproxy.helpers import (
    EchoServer,
    assert_added_latency,
    median_roundtrip_ms,
    read_until_closed,
    roundtrip_ms,
)

Connect = Callable[[int], socket.socket]


@pytest.fixture
def toxiproxy(toxiproxy_server: RunningServer, api: ToxiproxyClient) -> Iterator[Toxiproxy]:
    """The user's client, pointed at our server (its host/port are process-global)."""
    saved = (APIConsumer.host, APIConsumer.port)
    parts = urlsplit(toxiproxy_server.url)
    server = Toxiproxy()
    server.update_api_consumer(parts.hostname, parts.port)
    yield server
    APIConsumer.host, APIConsumer.port = saved


def test_toxiproxy_python_unmodified(
    toxiproxy: Toxiproxy, echo: EchoServer, connect: Connect
) -> None:
    assert toxiproxy.running()
    assert toxiproxy.version()
    proxy = toxiproxy.create(upstream=echo.address, name="py")
    with pytest.raises(ProxyExists):
        toxiproxy.create(upstream=echo.address, name="py")
    port = int(proxy.listen.rpartition(":")[2])
    sock = connect(port)
    base = median_roundtrip_ms(sock)

    proxy.add_toxic(type="latency", attributes={"latency": 100})
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 100, "jitter": 0}
    assert_added_latency(median_roundtrip_ms(sock), base, 100)
    proxy.destroy_toxic("latency_downstream")
    assert median_roundtrip_ms(sock) < base + 60

    proxy.disable()
    assert read_until_closed(sock) == (b"", "eof")
    assert toxiproxy.get_proxy("py").enabled is False
    proxy.enable()
    with proxy.down():
        assert toxiproxy.get_proxy("py").enabled is False
    assert toxiproxy.get_proxy("py").enabled is True

    proxy.add_toxic(type="noop", stream="upstream")
    assert toxiproxy.reset()
    assert proxy.toxics() == {}

    populated = toxiproxy.populate(
        [{"name": "py2", "upstream": echo.address, "listen": "127.0.0.1:0"}]
    )
    assert [p.name for p in populated] == ["py2"]
    assert set(toxiproxy.proxies()) == {"py", "py2"}
    assert proxy.destroy()
    with pytest.raises(TpNotFound):
        proxy.destroy()
    toxiproxy.destroy_all()
    assert toxiproxy.proxies() == {}


def test_client_proxies_and_toxics(
    api: ToxiproxyClient, echo: EchoServer, connect: Connect
) -> None:
    info = api.create_proxy("c", upstream=echo.address)
    assert info.enabled
    assert api.get_proxy("c") == info
    assert api.proxies() == {"c": info}
    toxic = api.add_toxic("c", "latency", attributes={"latency": 100, "jitter": 5})
    assert toxic.name == "latency_downstream"
    updated = api.update_toxic("c", toxic.name, attributes={"latency": 200}, toxicity=0.5)
    assert dict(updated.attributes) == {"latency": 200, "jitter": 5}
    assert updated.toxicity == 0.5
    assert api.get_toxic("c", toxic.name) == updated
    assert api.toxics("c") == [updated]
    api.remove_toxic("c", toxic.name)
    assert api.toxics("c") == []
    assert not api.disable("c").enabled
    assert api.enable("c").enabled
    assert roundtrip_ms(connect(info.port)) < 500
    api.delete_proxy("c")
    assert api.proxies() == {}


def test_client_reaches_names_with_url_characters(api: ToxiproxyClient, echo: EchoServer) -> None:
    # The server takes any name (as Toxiproxy does); the client encodes each one as a segment.
    proxy, toxic = "team/a b?", "../../x#1"
    api.create_proxy(proxy, upstream=echo.address)
    added = api.add_toxic(proxy, "latency", name=toxic, attributes={"latency": 5})
    assert api.get_toxic(proxy, toxic) == added
    assert api.update_toxic(proxy, toxic, toxicity=0.5).toxicity == 0.5
    api.remove_toxic(proxy, toxic)
    assert api.toxics(proxy) == []
    assert api.disable(proxy).name == proxy
    api.delete_proxy(proxy)
    assert api.proxies() == {}


def test_client_raises_typed_errors(api: ToxiproxyClient, echo: EchoServer) -> None:
    info = api.create_proxy("e", upstream=echo.address)
    with pytest.raises(AlreadyExists) as exists:
        api.create_proxy("e", upstream=echo.address)
    assert exists.value.message == "proxy already exists"
    with pytest.raises(NotFound):
        api.get_proxy("missing")
    with pytest.raises(NotFound):
        api.get_toxic("e", "missing")
    with pytest.raises(ApiError) as bad:
        api.add_toxic("e", "frobnicate")
    assert (bad.value.status, bad.value.message) == (400, "invalid toxic type")
    # toxiproxy-python turns this 500 into KeyError('name'); ours raises it.
    with pytest.raises(ApiError) as busy:
        api.create_proxy("f", upstream=echo.address, listen=info.listen)
    assert busy.value.status == 500
    assert isinstance(busy.value, FaultProxyError)


def test_client_populate_is_the_servers(api: ToxiproxyClient, echo: EchoServer) -> None:
    created = api.populate(
        [
            {"name": "x", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "y", "upstream": echo.address, "listen": "127.0.0.1:0", "enabled": False},
        ]
    )
    assert [(p.name, p.enabled) for p in created] == [("x", True), ("y", False)]
    with pytest.raises(ApiError) as bad:
        api.populate([{"name": "z", "listen": "127.0.0.1:0"}])
    assert bad.value.status == 400
    assert set(api.proxies()) == {"x", "y"}


def test_client_times_out_on_a_silent_server() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client = ToxiproxyClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match="timed out"):
            client.proxies()
        assert time.monotonic() - start < 3
    finally:
        stop.set()
        thread.join(2)
        silent.close()
        for sock in accepted:
            sock.close()


def test_client_connection_refused_is_server_unavailable() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ServerUnavailable):
        ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1).version()


def test_two_clients_keep_their_own_base_url(toxiproxy_server: RunningServer) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    dead = ToxiproxyClient(f"http://127.0.0.1:{free.getsockname()[1]}", timeout=1)
    free.close()
    live = ToxiproxyClient(toxiproxy_server.url)
    assert live.version()
    with pytest.raises(ServerUnavailable):
        dead.version()
    assert live.version()


def test_base_url_must_be_http_host_port() -> None:
    with pytest.raises(ValueError):
        ToxiproxyClient("127.0.0.1:8474")


def test_server_from_env(tmp_path: Path) -> None:
    assert server_from_env({"TOXIPROXY_URL": "http://127.0.0.1:9/", "PATH": ""}) == ServerChoice(
        url="http://127.0.0.1:9"
    )
    assert server_from_env({"PATH": str(tmp_path)}) == ServerChoice()
    binary = tmp_path / "toxiproxy-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert server_from_env({"PATH": str(tmp_path)}) == ServerChoice(binary=str(binary))


def test_start_server_prefers_toxiproxy_server_on_path(tmp_path: Path) -> None:
    # A stand-in binary with toxiproxy-server's flags (-host, -port) that runs our server.
    binary = tmp_path / "toxiproxy-server"
    binary.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m scenarios.faultproxy --host "$2" --port "$4"\n'
    )
    binary.chmod(0o755)
    choice = server_from_env({"PATH": str(tmp_path)})
    with start_server(choice=choice) as server:
        assert server.kind == "toxiproxy-server"
        assert server.client().version()
        proc = server.process
    assert proc is not None
    assert proc.poll() is not None


def test_start_server_uses_toxiproxy_url_without_starting(
    toxiproxy_server: RunningServer,
) -> None:
    choice = server_from_env({"TOXIPROXY_URL": toxiproxy_server.url})
    with start_server(choice=choice) as server:
        assert server.kind == "external"
        assert server.process is None
        assert server.client().version()

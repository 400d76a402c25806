"""Robustness: abrupt clients, deleting a proxy under load, no leaked sockets or tasks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

import psutil
import pytest

from scenarios.faultproxy.client import RunningServer, ToxiproxyClient
from scenarios.faultproxy.engine import Engine
from scenarios.faultproxy.models import ProxyInput, decode_toxic_create
from tests.scenarios.faultproxy.helpers import EchoServer
from tests.support import wait_for, wait_for_async

Connect = Callable[[int], socket.socket]


def live_connections(api: ToxiproxyClient, proxy: str) -> int:
    for line in api.metrics().splitlines():
        if line.startswith("toxiproxy_proxy_connections{") and f'proxy="{proxy}"' in line:
            return int(line.rsplit(" ", 1)[1])
    return 0


def abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def server_fds(server: RunningServer) -> int:
    assert server.process is not None
    return psutil.Process(server.process.pid).num_fds()


@pytest.mark.usefixtures("embedded_only")
def test_abrupt_connections_leave_nothing_behind(
    api: ToxiproxyClient, echo: EchoServer, toxiproxy_server: RunningServer
) -> None:
    info = api.create_proxy("abrupt", upstream=echo.address)
    api.add_toxic("abrupt", "latency", attributes={"latency": 20})
    api.add_toxic("abrupt", "slicer", stream="upstream", attributes={"average_size": 64})
    baseline = server_fds(toxiproxy_server)
    socks = []
    for i in range(150):
        sock = socket.create_connection(("127.0.0.1", info.port), timeout=5)
        if i % 2:
            sock.sendall(b"x" * 10_000)  # data in flight inside the toxics when the RST lands
        socks.append(sock)
    wait_for(lambda: echo.connections >= 150, timeout_s=10)
    for sock in socks:
        abort(sock)
    wait_for(lambda: live_connections(api, "abrupt") == 0, timeout_s=10)
    wait_for(lambda: server_fds(toxiproxy_server) <= baseline, timeout_s=10)
    assert api.get_proxy("abrupt").enabled


@pytest.mark.usefixtures("embedded_only")
def test_delete_proxy_under_load_closes_everything(
    api: ToxiproxyClient, echo: EchoServer, toxiproxy_server: RunningServer
) -> None:
    info = api.create_proxy("load", upstream=echo.address)
    api.add_toxic("load", "latency", attributes={"latency": 5, "jitter": 3})
    api.add_toxic("load", "bandwidth", stream="upstream", attributes={"rate": 2000})
    baseline = server_fds(toxiproxy_server)
    ended: list[str] = []
    lock = threading.Lock()

    def pump(sock: socket.socket) -> None:
        # Keep data flowing both ways until the proxy goes away under us.
        outcome = "timeout"
        sock.settimeout(5)
        try:
            while True:
                sock.sendall(b"y" * 4096)
                if not sock.recv(65536):
                    outcome = "eof"
                    break
        except (ConnectionResetError, BrokenPipeError):
            outcome = "reset"
        except TimeoutError:
            outcome = "timeout"
        finally:
            sock.close()
        with lock:
            ended.append(outcome)

    socks = [socket.create_connection(("127.0.0.1", info.port), timeout=5) for _ in range(20)]
    threads = [threading.Thread(target=pump, args=(s,), daemon=True) for s in socks]
    for thread in threads:
        thread.start()
    wait_for(lambda: live_connections(api, "load") == 20, timeout_s=10)
    time.sleep(0.2)  # let traffic run through the toxics for a moment (load, not a condition)
    api.delete_proxy("load")
    for thread in threads:
        thread.join(10)
    assert len(ended) == 20
    assert "timeout" not in ended, ended
    assert "load" not in api.proxies()
    wait_for(lambda: server_fds(toxiproxy_server) <= baseline - 1, timeout_s=10)  # listener too
    assert api.version()


class _Echo(asyncio.Protocol):
    """Task-free echo upstream, so the task check below only sees the engine's tasks."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def test_engine_leaves_no_tasks_after_abrupt_clients() -> None:
    loop = asyncio.get_running_loop()
    upstream = await loop.create_server(_Echo, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    engine = Engine(seed=1)
    proxy = await engine.create(ProxyInput("p", "127.0.0.1:0", f"127.0.0.1:{up_port}", True))
    proxy.add_toxic(decode_toxic_create({"type": "latency", "attributes": {"latency": 50}}, set()))
    port = int(proxy.listen.rpartition(":")[2])
    before = asyncio.all_tasks()
    writers = []
    for _ in range(60):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"z" * 5000)
        writers.append((reader, writer))
    for _reader, writer in writers:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    await wait_for_async(
        lambda: not proxy.connections and not asyncio.all_tasks() - before,
        timeout_s=10,
        what="teardown of every connection and task",
    )
    await engine.close()
    upstream.close()
    with contextlib.suppress(Exception):
        await upstream.wait_closed()


@pytest.mark.usefixtures("embedded_only")
def test_slow_toxic_pushes_back_on_the_sender(
    api: ToxiproxyClient, echo: EchoServer, toxiproxy_server: RunningServer
) -> None:
    """A 1 KB/s link must not buffer without bound: reading stops, TCP pushes back."""
    info = api.create_proxy("bp", upstream=echo.address)
    api.add_toxic("bp", "bandwidth", attributes={"rate": 1})
    assert toxiproxy_server.process is not None
    rss_before = psutil.Process(toxiproxy_server.process.pid).memory_info().rss
    sock = socket.create_connection(("127.0.0.1", info.port), timeout=5)
    sock.settimeout(0.5)
    sent = 0
    block = b"x" * 65536
    try:
        while sent < 300_000_000:
            sent += sock.send(block)
    except TimeoutError:
        pass
    finally:
        abort(sock)
    assert sent < 100_000_000, sent
    rss_after = psutil.Process(toxiproxy_server.process.pid).memory_info().rss
    assert rss_after - rss_before < 50_000_000

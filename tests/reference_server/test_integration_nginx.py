"""The reference server behind the real nginx (generated config, scenarios/stack/nginx.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from scenarios.stack.nginx import Nginx, NginxUnavailable
from tests.reference_server.live import Process, ServerFactory
from tests.reference_server.wsclient import V1Client, assert_dense, prompt

pytestmark = [pytest.mark.integration, pytest.mark.nginx]

StartNginx = Callable[[Process, float], Awaitable[Nginx]]


@pytest.fixture
async def nginx_in_front(tmp_path: Path) -> AsyncIterator[StartNginx]:
    started: list[Nginx] = []

    async def start(server: Process, read_timeout_s: float) -> Nginx:
        port = int(server.url.rsplit(":", 1)[1])
        try:
            nginx = await Nginx.start(port, log_dir=tmp_path, read_timeout_s=read_timeout_s)
        except NginxUnavailable as exc:
            pytest.skip(f"nginx unavailable: {exc.reason}")
        started.append(nginx)
        return nginx

    yield start
    for nginx in started:
        await nginx.stop()


async def test_heartbeat_keeps_a_quiet_websocket_open_through_nginx(
    server_factory: ServerFactory, nginx_in_front: StartNginx
) -> None:
    server = server_factory(heartbeat_interval_s=0.4, heartbeat_timeout_s=10)
    nginx = await nginx_in_front(server, 1.5)
    client = await V1Client.open("ws" + nginx.url[4:])
    # 3 s before the first token: twice nginx's read timeout, silent but for heartbeats.
    await client.chat("q", prompt("think first", tokens=3, ttft_ms=3000))
    got = await client.collect("q", wait_s=15)
    assert got.terminal is not None and got.terminal["type"] == "end"
    assert_dense(got.indexes, 3)
    await client.close()


async def test_without_heartbeat_nginx_cuts_the_quiet_websocket(
    server_factory: ServerFactory, nginx_in_front: StartNginx
) -> None:
    server = server_factory(heartbeat_interval_s=30)
    nginx = await nginx_in_front(server, 1.0)
    client = await V1Client.open("ws" + nginx.url[4:])
    await client.chat("q", prompt("think first", tokens=3, ttft_ms=3000))
    with pytest.raises(ConnectionClosed) as info:
        await client.collect("q", wait_s=15)
    assert info.value.rcvd is None  # 1006: nginx cuts the socket with no close frame


async def test_sse_is_not_buffered_by_nginx(
    server_factory: ServerFactory, nginx_in_front: StartNginx
) -> None:
    server = server_factory()
    nginx = await nginx_in_front(server, 10.0)
    async with httpx.AsyncClient(base_url=nginx.url, timeout=20) as http:
        created = await http.post(
            "/v1/streams", json={"messages": prompt("s", tokens=6, itl_ms=300)}
        )
        info = created.json()
        started = time.monotonic()
        first_token_at = None
        async with http.stream("GET", info["events_url"]) as response:
            async for line in response.aiter_lines():
                if line == "event: token" and first_token_at is None:
                    first_token_at = time.monotonic() - started
        total = time.monotonic() - started
    assert first_token_at is not None
    # Tokens arrive as they are generated (~1.5 s of spacing), not all at the end.
    assert total - first_token_at > 1.0, (first_token_at, total)

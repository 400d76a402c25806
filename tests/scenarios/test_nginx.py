"""nginx config generation (pure) and the real nginx in front of a WebSocket backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from scenarios.stack.nginx import Nginx, NginxConfig, NginxUnavailable, find_nginx, render_config


def test_render_config_has_ws_upgrade_sse_unbuffered_and_timeouts() -> None:
    prefix = Path("/tmp/some prefix")
    text = render_config(
        NginxConfig(listen_port=8081, upstream_port=9000, read_timeout_s=2), prefix
    )
    for needle in (
        "listen 127.0.0.1:8081;",
        "proxy_pass http://127.0.0.1:9000;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 2000ms;",
        "proxy_buffering off;",
        "gzip off;",
        "daemon off;",
        "master_process off;",
    ):
        assert needle in text, needle
    # every file path nginx will touch lives in the prefix
    for line in text.splitlines():
        if any(k in line for k in ("_path ", "pid ", "error_log ", "access_log ")):
            assert str(prefix) in line, line


def test_render_config_options() -> None:
    cfg = NginxConfig(
        listen_port=1, upstream_port=2, read_timeout_s=0.25, buffering=True, gzip_event_stream=True
    )
    text = render_config(cfg, Path("/p"))
    assert "proxy_read_timeout 250ms;" in text
    assert "proxy_buffering on;" in text
    assert "gzip_types text/event-stream" in text


def test_missing_nginx_is_a_clear_error() -> None:
    with pytest.raises(NginxUnavailable, match="'/nonexistent/nginx' not found"):
        find_nginx("/nonexistent/nginx")


async def _silent(ws: ServerConnection) -> None:
    # Reads (so the close handshake works) but never sends a data frame.
    async for _ in ws:
        pass


@pytest.fixture
async def backend_ports() -> AsyncIterator[tuple[int, int]]:
    """Two real WebSocket servers: silent, and silent but sending ping frames every 0.5 s."""
    async with (
        serve(_silent, "127.0.0.1", 0, ping_interval=None) as quiet,
        serve(_silent, "127.0.0.1", 0, ping_interval=0.5, ping_timeout=5) as pinging,
    ):
        yield quiet.sockets[0].getsockname()[1], pinging.sockets[0].getsockname()[1]


@pytest.mark.integration
@pytest.mark.nginx
@pytest.mark.slow
async def test_read_timeout_cuts_silent_ws_but_not_one_with_ping_frames(
    nginx_binary: str, backend_ports: tuple[int, int], tmp_path: Path
) -> None:
    quiet_port, pinging_port = backend_ports
    quiet = await Nginx.start(quiet_port, log_dir=tmp_path / "q", read_timeout_s=2.0)
    pinging = await Nginx.start(pinging_port, log_dir=tmp_path / "p", read_timeout_s=2.0)
    try:
        # Timed from before the handshakes: nginx's timer starts when it reads the backend's
        # handshake answer, and on a busy machine opening the second socket takes a while.
        t0 = time.monotonic()
        async with (
            connect(quiet.url.replace("http", "ws", 1), ping_interval=None) as cut,
            connect(pinging.url.replace("http", "ws", 1), ping_interval=None) as kept,
        ):
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await cut.recv()
            elapsed = time.monotonic() - t0
            # nginx closes the TCP connection without a close frame: 1006 locally
            assert cut.close_code is None or cut.close_code == 1006
            assert 1.5 <= elapsed <= 5.0, elapsed
            # The pinging one outlives the timeout by a wide margin. The client sends nothing
            # at all (client frames alone would also keep nginx's timer from firing).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    kept.wait_closed(), timeout=max(0.1, t0 + 4.5 - time.monotonic())
                )
            assert kept.close_code is None
    finally:
        await quiet.stop()
        await pinging.stop()
    assert quiet.process.exit_codes == [0] and pinging.process.exit_codes == [0]
    assert "nginx" in (tmp_path / "q" / "nginx.log").read_text()

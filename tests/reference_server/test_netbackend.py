"""The asyncio network backend of the upstream client, against real sockets on 127.0.0.1.

Each scenario runs on both event loops the server may use: asyncio's and uvloop's (uvicorn
picks uvloop when installed; its transports are not asyncio classes). The whole upstream client
runs on this backend in every integration test against the live mockllm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpcore
import httpx
import pytest
import uvloop

from reference_server import upstream
from reference_server.netbackend import AsyncioBackend, ReusePool, asyncio_transport
from reference_server.upstream import UpstreamClient, UpstreamFinish, UpstreamToken

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Runner = Callable[[Awaitable[None]], None]

on_both_loops = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:  # Python 3.11's server.close() leaves accepted sockets open
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


async def _reads_what_arrived_joined_up_to_max_bytes_then_eof() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in (b"ab", b"cd", b"efgh"):
            writer.write(part)
            await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        got = b""
        while True:
            data = await stream.read(3, timeout=5)
            assert len(data) <= 3
            if not data:
                break
            got += data
        assert got == b"abcdefgh"
        assert stream.get_extra_info("is_readable") is True  # closed by the server
        await stream.aclose()


async def _read_timeout_and_write_then_echo() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()  # silent until the client writes
        writer.write(line.upper())
        await writer.drain()
        await reader.read()  # then wait for the client to close
        writer.close()

    async with tcp_server(handler) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert stream.get_extra_info("is_readable") is False  # idle, open
        assert stream.get_extra_info("server_addr")[1] == port
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(100, timeout=0.2)
        assert 0.15 <= loop.time() - started < 2.0
        await stream.write(b"hello\n", timeout=5)
        assert await stream.read(100, timeout=5) == b"HELLO\n"
        await stream.aclose()


async def _connect_errors_are_httpcore_errors() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def _a_large_burst_pauses_reading_and_arrives_whole() -> None:
    size = 3 * 1024 * 1024  # far above the high-water mark

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(range(256)) * (size // 256))
        await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.2)  # let the burst fill the buffer while nobody reads
        received = bytearray()
        while data := await stream.read(65536, timeout=5):
            received += data
        assert len(received) == size and received[:256] == bytes(range(256))
        await stream.aclose()


async def _httpx_over_the_backend_keeps_connections_alive() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                body = b"data: 1\n\n"
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(transport=asyncio_transport(limits)) as client:
            for _ in range(3):
                response = await client.get(f"http://127.0.0.1:{port}/")
                assert response.status_code == 200 and response.text == "data: 1\n\n"
    assert connections == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def _tls_round_trip(cert: Path, key: Path) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.write((await reader.readuntil(b"\n")).upper())
            await writer.drain()
            await reader.read()
        writer.close()

    async with tcp_server(handler, server_ctx) as port:
        plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        client_ctx = ssl.create_default_context(cafile=str(cert))
        stream = await plain.start_tls(client_ctx, server_hostname="127.0.0.1", timeout=5)
        assert stream.get_extra_info("ssl_object") is not None
        await stream.write(b"secret\n", timeout=5)
        assert await stream.read(100, timeout=5) == b"SECRET\n"
        await stream.aclose()
        # An untrusted certificate is a connect error, as with httpx's default backend.
        plain = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ConnectError):
            await plain.start_tls(ssl.create_default_context(), "127.0.0.1", timeout=5)


@on_both_loops
def test_tls_through_start_tls(run: Runner, certificate: tuple[Path, Path]) -> None:
    run(_tls_round_trip(*certificate))


@on_both_loops
def test_reads_what_arrived_joined_up_to_max_bytes_then_eof(run: Runner) -> None:
    run(_reads_what_arrived_joined_up_to_max_bytes_then_eof())


@on_both_loops
def test_read_timeout_and_write_then_echo(run: Runner) -> None:
    run(_read_timeout_and_write_then_echo())


@on_both_loops
def test_connect_errors_are_httpcore_errors(run: Runner) -> None:
    run(_connect_errors_are_httpcore_errors())


@on_both_loops
def test_a_large_burst_pauses_reading_and_arrives_whole(run: Runner) -> None:
    run(_a_large_burst_pauses_reading_and_arrives_whole())


@on_both_loops
def test_httpx_over_the_backend_keeps_connections_alive(run: Runner) -> None:
    run(_httpx_over_the_backend_keeps_connections_alive())


def _counting_server(
    body: bytes = b"data: 1\n\n", *, chunked: bool = False, close_after: int = 0
) -> tuple[Handler, list[int]]:
    """Answers every request on a connection; ``opened[0]`` counts connections accepted.

    ``close_after`` > 0: the server closes each connection after that many responses.
    """
    opened = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        served = 0
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                if chunked:
                    writer.write(head + b"transfer-encoding: chunked\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n" % (len(body), body))
                    await writer.drain()
                    writer.write(b"0\r\n\r\n")  # the body's end, in a write of its own
                else:
                    writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                served += 1
                if served == close_after:
                    break
        writer.close()

    return handler, opened


async def _reuse_pool_reuses_newest_first_and_caps_idle() -> None:
    handler, opened = _counting_server()
    async with tcp_server(handler) as port:
        url = f"http://127.0.0.1:{port}/"
        transport = asyncio_transport(httpx.Limits(max_connections=10, max_keepalive_connections=3))
        pool: object = transport._pool
        assert isinstance(pool, ReusePool)
        async with httpx.AsyncClient(transport=transport) as client:
            # 5 at once: 5 connections; after them, 3 idle (the cap), the others closed.
            responses = await asyncio.gather(*(client.get(url) for _ in range(5)))
            assert all(r.text == "data: 1\n\n" for r in responses)
            assert (pool.opened, pool.idle, pool.active) == (5, 3, 0)
            # Then one after another: all on one of the idle connections.
            for _ in range(4):
                assert (await client.get(url)).status_code == 200
            assert (pool.opened, opened[0]) == (5, 5)
            # A response closed before its end is not reused: its connection is closed.
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
            assert (pool.idle, pool.opened) == (2, 5)


async def _reuse_pool_skips_connections_the_server_closed() -> None:
    handler, opened = _counting_server(close_after=1)
    async with tcp_server(handler) as port:
        url = f"http://127.0.0.1:{port}/"
        transport = asyncio_transport(httpx.Limits(max_connections=4, max_keepalive_connections=4))
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                assert (await client.get(url)).text == "data: 1\n\n"
                # Poll until the server's close reached us (EOF on the idle connection).
                for _ in range(200):
                    if transport._pool._idle[-1].has_expired():  # type: ignore[attr-defined]
                        break
                    await asyncio.sleep(0.01)
    assert opened[0] == 3


async def _reuse_pool_waits_for_a_slot_then_pool_timeout() -> None:
    handler, _ = _counting_server()
    async with tcp_server(handler) as port:
        url = f"http://127.0.0.1:{port}/"
        transport = asyncio_transport(httpx.Limits(max_connections=1, max_keepalive_connections=1))
        timeout = httpx.Timeout(5.0, pool=0.2)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            async with client.stream("GET", url) as held:  # not read: its slot stays taken
                assert held.status_code == 200
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(url)
            # Released (its unread connection closed): the slot serves the next request.
            assert (await client.get(url)).status_code == 200
            assert transport._pool.opened == 2  # type: ignore[attr-defined]


async def _upstream_streams_reuse_one_connection() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    handler, opened = _counting_server(body, chunked=True)
    async with tcp_server(handler) as port:
        client = UpstreamClient(f"http://127.0.0.1:{port}/v1")
        assert client.asyncio_backend
        try:
            for _ in range(3):
                events = [e async for e in client.stream_chat({"messages": []})]
                assert events == [UpstreamToken("hi"), UpstreamFinish("stop", None)]
        finally:
            await client.aclose()
    assert opened[0] == 1


@on_both_loops
def test_reuse_pool_reuses_newest_first_and_caps_idle(run: Runner) -> None:
    run(_reuse_pool_reuses_newest_first_and_caps_idle())


@on_both_loops
def test_reuse_pool_skips_connections_the_server_closed(run: Runner) -> None:
    run(_reuse_pool_skips_connections_the_server_closed())


@on_both_loops
def test_reuse_pool_waits_for_a_slot_then_pool_timeout(run: Runner) -> None:
    run(_reuse_pool_waits_for_a_slot_then_pool_timeout())


@on_both_loops
def test_upstream_streams_reuse_one_connection(run: Runner) -> None:
    run(_upstream_streams_reuse_one_connection())


async def _a_body_left_open_after_done_is_not_waited_for() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    event = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    opened = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            writer.write(head + b"%x\r\n%s\r\n" % (len(event), event))  # no final chunk
            await writer.drain()
            await reader.read()  # holds the body open until the client closes
        writer.close()

    async with tcp_server(handler) as port:
        client = UpstreamClient(f"http://127.0.0.1:{port}/v1")
        loop = asyncio.get_running_loop()
        try:
            for _ in range(2):
                start = loop.time()
                events = client.stream_chat({"messages": []})
                assert await anext(events) == UpstreamToken("hi")
                assert await anext(events) == UpstreamFinish("stop", None)
                finished = loop.time() - start
                # The finish does not wait for the body's end; the drain after it gives up.
                assert finished < upstream._DRAIN_S
                assert [e async for e in events] == []
                assert loop.time() - start >= upstream._DRAIN_S
        finally:
            await client.aclose()
    assert opened[0] == 2  # the connection left open was not reused


@on_both_loops
def test_a_body_left_open_after_done_is_not_waited_for(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "_DRAIN_S", 0.3)
    run(_a_body_left_open_after_done_is_not_waited_for())

"""The asyncio network backend of the upstream client, against real sockets on 127.0.0.1.

Each scenario runs on both event loops the server may use: asyncio's and uvloop's (uvicorn
picks uvloop when installed; its transports are not asyncio classes). The whole upstream client
runs on this backend in every integration test against the live mockllm.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from reference_server.netbackend import AsyncioBackend, asyncio_transport

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

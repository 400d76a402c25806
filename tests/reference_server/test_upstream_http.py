"""The upstream HTTP/1.1 client (``upstream_http``), against real sockets on 127.0.0.1.

Each scenario runs on both event loops the server may use: asyncio's and uvloop's (uvicorn
picks uvloop when installed; its transports are not asyncio classes). The whole upstream client
runs on this pool in every integration test against the live mockllm; these tests cover what
mockllm does not do: TLS, stalls, broken and oddly framed responses, closes at bad moments.
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
from typing import Any

import httpx
import pytest
import uvloop

from reference_server import upstream
from reference_server.errors import UpstreamError, UpstreamStatusError, UpstreamTimeout
from reference_server.providers import UpstreamEvent, UpstreamFinish, UpstreamToken
from reference_server.upstream import UpstreamClient
from reference_server.upstream_http import ConnectionPool, Endpoint

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Runner = Callable[[Awaitable[None]], None]

on_both_loops = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])

SSE_BODY = b"data: 1\n\n"


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
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        await server.wait_closed()


def make_pool(port: int, scheme: str = "http", **options: Any) -> ConnectionPool:
    settings: dict[str, Any] = {
        "headers": {"Content-Type": "application/json"},
        "connect_timeout_s": 5.0,
        "read_timeout_s": 5.0,
        "max_connections": 10,
    }
    settings.update(options)
    return ConnectionPool(Endpoint.from_url(f"{scheme}://127.0.0.1:{port}/v1/x"), **settings)


async def read_body(pool: ConnectionPool, body: bytes = b"{}") -> tuple[int, bytes]:
    async with pool.post(body) as exchange:
        received = b""
        while part := await exchange.read():
            received += part
        return exchange.status, received


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def _counting_server(
    body: bytes = SSE_BODY, *, chunked: bool = False, close_after: int = 0
) -> tuple[Handler, list[int]]:
    """Answers every request on a connection; ``opened[0]`` counts connections accepted.

    ``close_after`` > 0: the server closes each connection after that many responses. A
    request whose body is ``hold`` gets a body that does not end until the client closes.
    """
    opened = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        served = 0
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                _, request = await read_request(reader)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                if request == b"hold":
                    writer.write(head + b"transfer-encoding: chunked\r\n\r\n1\r\na\r\n")
                    await writer.drain()
                    await reader.read()
                    break
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


def test_endpoint_from_url() -> None:
    ep = Endpoint.from_url("http://127.0.0.1:8080/v1/chat/completions")
    assert (ep.scheme, ep.host, ep.port, ep.target) == (
        "http",
        "127.0.0.1",
        8080,
        "/v1/chat/completions",
    )
    assert ep.host_header == "127.0.0.1:8080"
    assert Endpoint.from_url("https://api.example.com/v1?x=1").target == "/v1?x=1"
    assert Endpoint.from_url("https://api.example.com/v1").host_header == "api.example.com"
    assert Endpoint.from_url("http://[::1]:9/").host_header == "[::1]:9"
    for bad in ("ftp://host/", "http:///path", "127.0.0.1:8080"):
        with pytest.raises(ValueError, match="http:// or https://"):
            Endpoint.from_url(bad)
    # A header value cannot smuggle another header (an API key with a newline, say).
    with pytest.raises(ValueError, match="invalid HTTP header"):
        make_pool(9, headers={"Authorization": "Bearer k\r\nX-Evil: 1"})


async def _sends_one_request_shape_and_reads_chunks_as_they_come() -> None:
    seen: list[tuple[bytes, bytes]] = []
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"2\r\ncd\r\n4\r\nefgh\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with tcp_server(handler) as port:
        pool = make_pool(port, headers={"Content-Type": "application/json", "X-Test": "1"})
        async with pool.post(b'{"a":1}') as exchange:
            assert exchange.status == 200
            assert exchange.headers["transfer-encoding"] == "chunked"
            assert await exchange.read() == b"ab"  # the first chunk, before the rest exists
            release.set()
            rest = b""
            while part := await exchange.read():
                rest += part
            assert rest == b"cdefgh" and exchange.complete
        await pool.aclose()
    head, body = seen[0]
    assert body == b'{"a":1}'
    assert head.startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
    assert b"X-Test: 1\r\n" in head and b"Content-Length: 7\r\n" in head


@on_both_loops
def test_sends_one_request_shape_and_reads_chunks_as_they_come(run: Runner) -> None:
    run(_sends_one_request_shape_and_reads_chunks_as_they_come())


async def _read_timeout_covers_the_head_and_every_wait() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # never answers
        writer.close()

    async def stalls_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    loop = asyncio.get_running_loop()
    async with tcp_server(silent) as port:
        pool = make_pool(port, read_timeout_s=0.2)
        started = loop.time()
        with pytest.raises(UpstreamTimeout, match="read timeout"):
            async with pool.post(b"{}"):
                pass
        assert 0.15 <= loop.time() - started < 2.0
        assert pool.idle == 0  # a timed-out connection is not kept
    async with tcp_server(stalls_mid_body) as port:
        pool = make_pool(port, read_timeout_s=0.2)
        async with pool.post(b"{}") as exchange:
            assert await exchange.read() == b"a"
            started = loop.time()
            with pytest.raises(UpstreamTimeout):
                await exchange.read()
            assert 0.15 <= loop.time() - started < 2.0


@on_both_loops
def test_read_timeout_covers_the_head_and_every_wait(run: Runner) -> None:
    run(_read_timeout_covers_the_head_and_every_wait())


async def _connect_errors_name_the_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamError, match="ConnectError"):
        await read_body(make_pool(port))


@on_both_loops
def test_connect_errors_name_the_failure(run: Runner) -> None:
    run(_connect_errors_name_the_failure())


async def _broken_responses_are_errors_and_close_delimited_bodies_end_at_close() -> None:
    answers = {
        b"/garbage": b"not http at all\r\n\r\n",
        b"/cut": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
        b"/cut-chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"/no-head": b"HTTP/1.1 20",
        b"/until-close": b"HTTP/1.1 200 OK\r\n\r\nevery byte until the close",
    }

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        writer.write(answers[head.split(b" ")[1]])
        await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:

        def pool_for(path: str) -> ConnectionPool:
            return ConnectionPool(
                Endpoint.from_url(f"http://127.0.0.1:{port}{path}"),
                headers={},
                connect_timeout_s=5,
                read_timeout_s=5,
                max_connections=2,
            )

        with pytest.raises(UpstreamError, match="ProtocolError: malformed HTTP response"):
            await read_body(pool_for("/garbage"))
        with pytest.raises(UpstreamError, match="closed mid-body"):
            await read_body(pool_for("/cut"))
        with pytest.raises(UpstreamError, match="closed mid-body"):
            await read_body(pool_for("/cut-chunked"))
        with pytest.raises(UpstreamError, match="closed before the response"):
            await read_body(pool_for("/no-head"))
        assert await read_body(pool_for("/until-close")) == (200, b"every byte until the close")


@on_both_loops
def test_broken_responses_are_errors_and_close_delimited_bodies_end_at_close(
    run: Runner,
) -> None:
    run(_broken_responses_are_errors_and_close_delimited_bodies_end_at_close())


async def _a_large_burst_pauses_reading_and_arrives_whole() -> None:
    size = 3 * 1024 * 1024  # far above the high-water mark
    body = bytes(range(256)) * (size // 256)
    handler, _ = _counting_server(body)
    async with tcp_server(handler) as port:
        pool = make_pool(port)
        async with pool.post(b"{}") as exchange:
            # Let the burst fill the buffer while nobody reads: reading pauses at the mark.
            for _ in range(500):
                if exchange._paused:
                    break
                await asyncio.sleep(0.01)
            assert exchange._paused
            received = bytearray()
            while data := await exchange.read():
                received += data
        assert len(received) == size and received[:256] == bytes(range(256))
        assert pool.idle == 1  # read to its end: kept


@on_both_loops
def test_a_large_burst_pauses_reading_and_arrives_whole(run: Runner) -> None:
    run(_a_large_burst_pauses_reading_and_arrives_whole())


async def _pool_reuses_newest_first_and_caps_idle() -> None:
    handler, opened = _counting_server(chunked=True)
    async with tcp_server(handler) as port:
        pool = make_pool(port, max_connections=3)
        # 3 at once: 3 connections, all kept.
        results = await asyncio.gather(*(read_body(pool) for _ in range(3)))
        assert results == [(200, SSE_BODY)] * 3
        assert (pool.opened, pool.idle, pool.active) == (3, 3, 0)
        # Then one after another: all on the newest idle connection.
        newest = pool._idle[-1]
        for _ in range(4):
            async with pool.post(b"{}") as exchange:
                assert exchange is newest
                while await exchange.read():
                    pass
        assert (pool.opened, opened[0]) == (3, 3)
        # A response closed before its end is not reused: its connection is closed.
        async with pool.post(b"hold") as exchange:
            assert exchange.status == 200
        assert (pool.idle, pool.opened) == (2, 3)
        await pool.aclose()
        assert pool.idle == 0


@on_both_loops
def test_pool_reuses_newest_first_and_caps_idle(run: Runner) -> None:
    run(_pool_reuses_newest_first_and_caps_idle())


async def _pool_skips_connections_the_server_closed_or_that_expired() -> None:
    handler, opened = _counting_server(close_after=1)
    async with tcp_server(handler) as port:
        pool = make_pool(port)
        for _ in range(3):
            assert await read_body(pool) == (200, SSE_BODY)
            # Wait until the server's close reached the idle connection.
            for _ in range(200):
                if pool._idle and pool._idle[-1].closed:
                    break
                await asyncio.sleep(0.01)
        assert opened[0] == 3
    handler, opened = _counting_server()
    async with tcp_server(handler) as port:
        # A keep-alive limit of 0: every idle connection has expired by the next request.
        pool = make_pool(port, keepalive_s=0.0)
        assert await read_body(pool) == (200, SSE_BODY)
        assert await read_body(pool) == (200, SSE_BODY)
        assert opened[0] == 2 and pool.opened == 2


@on_both_loops
def test_pool_skips_connections_the_server_closed_or_that_expired(run: Runner) -> None:
    run(_pool_skips_connections_the_server_closed_or_that_expired())


async def _a_reused_connection_closed_before_answering_is_retried_once() -> None:
    """The race with the server's keep-alive timeout: it closes just as we send."""
    opened = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n" + SSE_BODY)
            await writer.drain()
            await read_request(reader)  # the second request: closed without an answer
        writer.close()

    async with tcp_server(handler) as port:
        pool = make_pool(port)
        assert await read_body(pool) == (200, SSE_BODY)
        # The pool still holds the connection as idle and open: the close is not seen yet.
        assert pool.idle == 1 and not pool._idle[-1].closed
        assert await read_body(pool) == (200, SSE_BODY)
        assert opened[0] == 2 and pool.opened == 2


@on_both_loops
def test_a_reused_connection_closed_before_answering_is_retried_once(run: Runner) -> None:
    run(_a_reused_connection_closed_before_answering_is_retried_once())


async def _pool_waits_for_a_slot_then_times_out() -> None:
    handler, _ = _counting_server()
    async with tcp_server(handler) as port:
        pool = make_pool(port, max_connections=1, connect_timeout_s=0.2)
        async with pool.post(b"hold") as held:  # its slot stays taken
            assert held.status == 200
            with pytest.raises(UpstreamTimeout, match="pool timeout"):
                await read_body(pool)
        # Released (its unread connection closed): the slot serves the next request.
        assert await read_body(pool) == (200, SSE_BODY)
        assert pool.opened == 2


@on_both_loops
def test_pool_waits_for_a_slot_then_times_out(run: Runner) -> None:
    run(_pool_waits_for_a_slot_then_times_out())


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
    handler, opened = _counting_server(chunked=True)
    async with tcp_server(handler, server_ctx) as port:
        trusted = ssl.create_default_context(cafile=str(cert))
        pool = make_pool(port, "https", ssl_context=trusted)
        for _ in range(2):
            assert await read_body(pool) == (200, SSE_BODY)
        assert opened[0] == 1  # kept alive over TLS too
        await pool.aclose()
        # An untrusted certificate is a connect error.
        with pytest.raises(UpstreamError, match="ConnectError"):
            await read_body(make_pool(port, "https"))


@on_both_loops
def test_tls(run: Runner, certificate: tuple[Path, Path]) -> None:
    run(_tls_round_trip(*certificate))


async def _upstream_streams_reuse_one_connection() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    handler, opened = _counting_server(body, chunked=True)
    async with tcp_server(handler) as port:
        client = UpstreamClient(f"http://127.0.0.1:{port}/v1")
        assert not client.via_proxy
        try:
            for _ in range(3):
                events: list[UpstreamEvent] = []
                await client.stream_chat({"messages": []}, events.append)
                assert events == [UpstreamToken("hi"), UpstreamFinish("stop", None)]
        finally:
            await client.aclose()
    assert opened[0] == 1 and client.connections_opened == 1


@on_both_loops
def test_upstream_streams_reuse_one_connection(run: Runner) -> None:
    run(_upstream_streams_reuse_one_connection())


def _stamped(
    into: list[tuple[UpstreamEvent, float]], start: float
) -> Callable[[UpstreamEvent], None]:
    loop = asyncio.get_running_loop()
    return lambda event: into.append((event, loop.time() - start))


async def _a_body_left_open_after_done_is_not_waited_for() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    event = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    opened = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)
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
                events: list[tuple[UpstreamEvent, float]] = []
                start = loop.time()
                await client.stream_chat({"messages": []}, _stamped(events, start))
                assert [e for e, _ in events] == [UpstreamToken("hi"), UpstreamFinish("stop", None)]
                # The finish does not wait for the body's end; the drain after it gives up.
                assert events[-1][1] < upstream._DRAIN_S
                # uvloop's clock counts whole milliseconds: a timer may fire a tick early.
                assert loop.time() - start >= upstream._DRAIN_S - 0.005
        finally:
            await client.aclose()
    assert opened[0] == 2  # the connection left open was not reused


@on_both_loops
def test_a_body_left_open_after_done_is_not_waited_for(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "_DRAIN_S", 0.3)
    run(_a_body_left_open_after_done_is_not_waited_for())


async def _error_status_body_and_retry_after_reach_the_caller() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                body = json.dumps({"error": {"message": "slow down"}}).encode()
                writer.write(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:
        slept: list[float] = []

        async def no_sleep(seconds: float) -> None:
            slept.append(seconds)

        client = UpstreamClient(
            f"http://127.0.0.1:{port}/v1", retry=upstream.RetryPolicy(max_retries=2), sleep=no_sleep
        )
        try:
            with pytest.raises(UpstreamStatusError, match="429: slow down"):
                await client.stream_chat({"messages": []}, lambda e: None)
        finally:
            await client.aclose()
        assert slept == [0.0, 0.0] and client.connections_opened == 1


@on_both_loops
def test_error_status_body_and_retry_after_reach_the_caller(run: Runner) -> None:
    run(_error_status_body_and_retry_after_reach_the_caller())


async def _stream_into_feeds_the_sink_from_data_received() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"one", b"two", b"three"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.05)  # separate reads on the client side
        await release.wait()
        writer.write(b"4\r\nrest\r\n0\r\n\r\n")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    async with tcp_server(handler) as port:
        pool = make_pool(port, read_timeout_s=0.25)
        async with pool.post(b"{}") as exchange:
            got: list[bytes] = []
            wakes = 0
            real_wait = exchange._wait

            async def counting_wait() -> None:
                nonlocal wakes
                wakes += 1
                await real_wait()

            exchange._wait = counting_wait  # type: ignore[method-assign]

            def sink(data: bytes) -> bool:
                got.append(data)
                return b"three" not in b"".join(got)

            # 150 ms of chunks against a 250 ms read timeout: the timeout counts from the last
            # bytes, not from the start of the wait.
            await exchange.stream_into(sink)
            assert b"".join(got) == b"onetwothree"
            assert wakes == 1  # one wait for the whole body, not one per chunk
            release.set()
            rest = b""
            while part := await exchange.read():
                rest += part
            assert rest == b"rest"  # bytes after the sink stopped stay readable

        def failing(data: bytes) -> bool:
            raise ValueError("sink bug")

        release.clear()
        async with pool.post(b"{}") as exchange:
            with pytest.raises(ValueError, match="sink bug"):
                await exchange.stream_into(failing)
        # A stall while streaming (the server holds the body after "three") is a read timeout,
        # and the connection is not kept.
        loop = asyncio.get_running_loop()
        async with pool.post(b"{}") as exchange:
            started = loop.time()
            with pytest.raises(UpstreamTimeout):
                await exchange.stream_into(lambda data: True)
            # The chunks take 100 ms, then the 250 ms stall: about 350 ms. A timeout counted from
            # the start of the wait would fire at 250 ms; the bound sits between the two, clear of
            # timers that fire a millisecond early.
            assert loop.time() - started >= 0.25 + 0.06
        assert exchange.closed and pool.idle == 0


@on_both_loops
def test_stream_into_feeds_the_sink_from_data_received(run: Runner) -> None:
    run(_stream_into_feeds_the_sink_from_data_received())


async def _a_body_left_unread_above_the_mark_does_not_stall_the_next_request() -> None:
    body = b"x" * (256 * 1024 + 100)  # its last bytes both complete it and cross the mark
    handler, opened = _counting_server(body)
    async with tcp_server(handler) as port:
        pool = make_pool(port, read_timeout_s=2.0)
        async with pool.post(b"{}") as exchange:
            for _ in range(200):
                if exchange.complete:
                    break
                await asyncio.sleep(0.01)
            assert exchange.complete and exchange._paused
        # Left unread, complete: kept; reading resumes for the next answer.
        assert pool.idle == 1
        assert await read_body(pool) == (200, body)
        assert opened[0] == 1


@on_both_loops
def test_a_body_left_unread_above_the_mark_does_not_stall_the_next_request(
    run: Runner,
) -> None:
    run(_a_body_left_unread_above_the_mark_does_not_stall_the_next_request())


async def _through_an_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    handler, _ = _counting_server(body, chunked=True)
    proxied: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A forward proxy for plain HTTP: absolute-form request in, origin-form out."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head, content = await read_request(reader)
                method, target, rest = head.split(b" ", 2)
                proxied.append(target)
                url = httpx.URL(target.decode())
                up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
                up_writer.write(b" ".join([method, url.raw_path, rest]) + content)
                answer = await up_reader.readuntil(b"0\r\n\r\n")
                up_writer.close()
                writer.write(answer)
                await writer.drain()
        writer.close()

    async with tcp_server(handler) as port, tcp_server(proxy) as proxy_port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        client = UpstreamClient(f"http://127.0.0.1:{port}/v1")
        assert client.via_proxy and client.connections_opened is None
        try:
            events: list[UpstreamEvent] = []
            await client.stream_chat({"messages": []}, events.append)
            assert events == [UpstreamToken("hi"), UpstreamFinish("stop", None)]
        finally:
            await client.aclose()
    assert proxied == [f"http://127.0.0.1:{port}/v1/chat/completions".encode()]


def test_through_an_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    asyncio.run(_through_an_environment_proxy(monkeypatch))

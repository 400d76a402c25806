"""Limits and hygiene: size, streams, rate, Origin, auth, heartbeat, slow readers, grace."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.reference_server.live import Ledger, ServerFactory
from tests.reference_server.wsclient import V1, V1Client, assert_dense, prompt

pytestmark = pytest.mark.integration


async def closed_code(ws_url: str, **kwargs: object) -> int | None:
    """Open a v1 socket and return the close code the server ends it with."""
    async with connect(ws_url, subprotocols=[V1], **kwargs) as ws:  # type: ignore[arg-type, list-item]
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    return info.value.rcvd.code if info.value.rcvd else None


async def test_oversized_message_closes_1009_and_server_keeps_serving(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(max_message_bytes=1024)
    client = await V1Client.open(server.ws_url)
    assert client.hello["limits"]["max_message_bytes"] == 1024
    await client.chat("big", prompt("x" * 2000))
    with pytest.raises(ConnectionClosed) as info:
        await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    fresh = await V1Client.open(server.ws_url)
    await fresh.assert_usable()
    await fresh.close()


@pytest.mark.parametrize("path", ["/v1/streams", "/v1/chat/blocking"])
@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 1000000000\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["declared-1GB", "chunked"],
)
async def test_an_http_body_over_the_limit_is_refused_before_the_rest_arrives(
    server_factory: ServerFactory, ledger: Ledger, path: str, framing: bytes
) -> None:
    """A client still sending gets its 413: the server reads at most the limit, not the body.

    A raw socket, because an HTTP client library sends the whole body before reading."""
    server = server_factory(max_message_bytes=1024)
    url = httpx.URL(server.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    part = b"x" * 4096
    if framing.startswith(b"Transfer-Encoding"):
        part = b"%x\r\n%s\r\n" % (len(part), part)  # one chunk, and no last chunk
    head = f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
    writer.write(head.encode() + framing + b"\r\n" + part)
    await writer.drain()
    answer = b""
    try:
        while not answer.endswith(b"}}"):  # the end of the error body
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            answer += chunk
    finally:
        writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b'"code":"message_too_big"' in rest
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        assert (await http.get("/stats")).json()["totals"]["streams"] == 0
    assert ledger.requests() == []


async def test_stream_limit_per_connection(server_factory: ServerFactory, ledger: Ledger) -> None:
    server = server_factory(max_streams_per_connection=2)
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("a", tokens=300, itl_ms=10))
    await client.chat("b", prompt("b", tokens=300, itl_ms=10))
    await client.chat("c", prompt("c", tokens=2))
    error = await client.recv_type("error")
    assert error["code"] == "too_many_streams" and error["id"] == "c" and error["retryable"]
    await client.send(type="cancel", id="a")
    await client.recv_type("cancelled")
    await client.chat("c", prompt("c", tokens=2))
    assert (await client.collect("c")).terminal["type"] == "end"  # type: ignore[index]
    await client.close()


async def test_message_rate_limit(server_factory: ServerFactory) -> None:
    server = server_factory(messages_per_second=2, message_burst=3)
    client = await V1Client.open(server.ws_url)
    for n in range(10):
        await client.send(type="ping", ts=n)
    replies = [await client.recv() for _ in range(10)]
    kinds = [r["type"] if r["type"] == "pong" else r["code"] for r in replies]
    # Burst 3, refill 2/s: most of ten back-to-back messages are refused (slack for a slow box).
    assert kinds.count("pong") >= 3 and kinds.count("rate_limited") >= 3, kinds
    assert all(r["retryable"] for r in replies if r["type"] == "error")
    # The bucket refills: the connection is usable again without reconnecting.
    for _ in range(50):
        await client.send(type="ping", ts="later")
        reply = await client.recv()
        if reply["type"] == "pong":
            break
        await asyncio.sleep(0.1)
    assert reply["type"] == "pong"
    await client.close()


async def test_origin_allow_list(server_factory: ServerFactory) -> None:
    server = server_factory(allowed_origins="http://good.example", allow_missing_origin="false")
    assert await closed_code(server.ws_url + "/ws/chat/c", origin="http://evil.example") == 1008
    assert await closed_code(server.ws_url + "/ws/chat/c") == 1008  # no Origin at all
    client = await V1Client.open(server.ws_url, origin="http://good.example")
    await client.assert_usable()
    await client.close()


async def test_bearer_token_auth(server_factory: ServerFactory) -> None:
    server = server_factory(auth_token="s3cret")
    assert await closed_code(server.ws_url + "/ws/chat/c") == 1008
    wrong = {"Authorization": "Bearer nope"}
    assert await closed_code(server.ws_url + "/ws/chat/c", additional_headers=wrong) == 1008
    good = await V1Client.open(server.ws_url, additional_headers={"Authorization": "Bearer s3cret"})
    await good.assert_usable()
    await good.close()
    by_query = await V1Client.open(server.ws_url, "c2?access_token=s3cret")
    await by_query.assert_usable()
    await by_query.close()
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert (await http.post("/v1/chat/blocking", json=body)).status_code == 401


async def test_heartbeat_pings_and_closes_silent_peers(server_factory: ServerFactory) -> None:
    server = server_factory(heartbeat_interval_s=0.3, heartbeat_timeout_s=1.2)
    assert server  # a silent client: reads, never writes
    silent = await V1Client.open(server.ws_url)
    assert silent.hello["heartbeat_interval_ms"] == 300
    opened = time.monotonic()
    ping = await silent.recv_type("ping")
    assert ping["ts"] == 1
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await silent.recv(wait_s=10)
    elapsed = time.monotonic() - opened
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    assert 0.8 < elapsed < 5.0, elapsed
    # A peer that answers pongs stays connected past the timeout.
    lively = await V1Client.open(server.ws_url)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        message = await lively.recv_type("ping")
        await lively.send(type="pong", ts=message["ts"])
    await lively.assert_usable()
    await lively.close()


async def test_slow_reader_hits_a_bounded_send_queue(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    # The client sends nothing while it reads 100,000 tokens, which takes longer than the
    # default heartbeat timeout (30 s) on a busy machine: liveness is not what this test is about.
    server = server_factory(send_queue_max_messages=8, heartbeat_timeout_s=600)
    # The kernel must not absorb the whole flood, or the server never sees a reader that
    # stopped: a small receive buffer here (it otherwise grows to tens of MB on loopback), and
    # two floods of ~3 MB each, more than the server's send buffer grows to (4 MB by default).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", httpx.URL(server.url).port or 80))
    client = await V1Client.open(server.ws_url, max_queue=4, sock=sock)
    count = 50_000
    # Two streams: the first one's forwarder writes directly while the sender is idle and
    # blocks once the socket stops taking frames; the second's frames then queue.
    await client.chat("flood", prompt("flood", tokens=count))
    await client.chat("flood2", prompt("flood", tokens=count))
    async with httpx.AsyncClient(base_url=server.url) as http:
        # We do not read: the queue fills up to its bound and stays there.
        peak = 0
        for _ in range(200):
            stats = (await http.get("/stats")).json()
            peak = max(peak, stats["send_queue_messages"])
            if peak >= 8:
                break
            await asyncio.sleep(0.05)
        assert peak == 8, stats
        # While the generations go on, the queue never grows past its bound.
        for _ in range(6):
            stats = (await http.get("/stats")).json()
            assert stats["send_queue_messages"] <= 8
            await asyncio.sleep(0.05)
    indexes: dict[str, list[int]] = {"flood": [], "flood2": []}
    ends: dict[str, str] = {}
    while len(ends) < 2:
        message = await client.recv(60)
        if message["type"] == "token":
            indexes[message["id"]].append(message["index"])
        elif message["type"] in ("end", "error", "cancelled"):
            ends[message["id"]] = message["type"]
    assert ends == {"flood": "end", "flood2": "end"}
    for got in indexes.values():
        assert_dense(got, count)
    await client.close()


async def test_disconnect_without_grace_stops_upstream_at_once(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    server = server_factory(resume_grace_s=0)
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("bye", tokens=500, itl_ms=20))
    await client.collect("a", stop_after_tokens=2)
    dropped_at = time.time()
    await client.drop()
    [entry] = ledger.wait(1, outcome="client_disconnected")
    assert entry["ended_at"] - dropped_at < 0.1, entry["ended_at"] - dropped_at


async def test_disconnect_with_grace_keeps_generating_then_stops(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    server = server_factory(resume_grace_s=1.0)
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("bye", tokens=1000, itl_ms=20))
    await client.collect("a", stop_after_tokens=2)
    dropped_at = time.time()
    await client.drop()
    [entry] = ledger.wait(1, outcome="client_disconnected", timeout=10)
    assert 0.9 < entry["ended_at"] - dropped_at < 3.0, entry["ended_at"] - dropped_at
    assert entry["tokens_sent"] > 20  # it kept generating during the grace period


async def test_tutorial_shaped_client(server_factory: ServerFactory, ledger: Ledger) -> None:
    server = server_factory()
    async with connect(f"{server.ws_url}/ws/chat/tutorial-user") as ws:
        assert ws.subprotocol is None
        await ws.send(json.dumps({"messages": prompt("hi", tokens=6), "model": "gpt-4o-mini"}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(7)]
        assert [f["type"] for f in frames] == ["token"] * 6 + ["end"]
        assert frames[-1] == {"type": "end"}
        [entry] = ledger.wait(1, outcome="completed")
        assert "".join(f["content"] for f in frames[:-1]) == entry["text"]
        await ws.send("{oops")
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and "invalid_json" in error["message"]
        await ws.send(json.dumps({"messages": prompt("again", tokens=2)}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
        assert [f["type"] for f in frames] == ["token", "token", "end"]
        ledger.clear()
        await ws.send(json.dumps({"messages": prompt("long", tokens=500, itl_ms=20)}))
        await asyncio.wait_for(ws.recv(), 10)
        ws.transport.abort()
        await asyncio.sleep(0)  # abort() closes the socket in a loop callback
    ledger.wait(1, outcome="client_disconnected")


@pytest.mark.slow
async def test_client_that_stops_reading_is_closed(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    """Kernel buffers absorb a few MB first, so this takes ~5-10 s on this machine."""
    server = server_factory(send_queue_max_messages=4, send_timeout_s=1)
    # A small receive buffer so the server's writes block soon after the client stops reading.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = server.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    client = await V1Client.open(server.ws_url, sock=sock, max_queue=1, compression=None)
    await client.chat("flood", prompt("flood", tokens=120_000))
    async with httpx.AsyncClient(base_url=server.url) as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        stats = (await http.get("/stats")).json()
        while stats["connections"] != 0:
            assert loop.time() < deadline, f"slow reader never closed: {stats}"
            assert stats["send_queue_messages"] <= 4
            await asyncio.sleep(0.1)
            stats = (await http.get("/stats")).json()
        # The stream outlives the socket (resume grace) and its buffer is still there.
        assert stats["streams"] == 1 and stats["readers"] == 0
    client.ws.transport.abort()

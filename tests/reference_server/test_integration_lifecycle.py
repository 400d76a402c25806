"""Graceful shutdown and the leak check (hundreds of sockets dropped mid-stream)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.reference_server.httpapi import create, read_events
from tests.reference_server.live import Ledger, ServerFactory
from tests.reference_server.wsclient import V1Client, prompt
from tests.support import wait_for_async

pytestmark = pytest.mark.integration


async def stats_of(http: httpx.AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await http.get("/stats")).json()
    return stats


async def poll_stats(
    http: httpx.AsyncClient, check: Callable[[dict[str, Any]], bool], wait_s: float = 15
) -> dict[str, Any]:
    """The server's ``/stats`` once ``check`` holds for them."""
    return await wait_for_async(
        lambda: stats_of(http), wait_s, interval=0.05, what="expected stats", until=check
    )


async def test_graceful_shutdown(server_factory: ServerFactory, ledger: Ledger) -> None:
    server = server_factory(shutdown_grace_s=3)
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("long a", tokens=1000, itl_ms=20))
    await client.chat("b", prompt("long b", tokens=1000, itl_ms=20))
    await client.collect("a", stop_after_tokens=1)
    tutorial = await connect(f"{server.ws_url}/ws/chat/tutorial")
    await tutorial.send(json.dumps({"messages": prompt("long t", tokens=1000, itl_ms=20)}))
    assert json.loads(await asyncio.wait_for(tutorial.recv(), 10))["type"] == "token"
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("long sse", tokens=1000, itl_ms=20))
        sse = asyncio.ensure_future(read_events(http, info["events_url"]))
        await poll_stats(http, lambda s: s["sse_readers"] == 1 and s["upstream_connections"] == 4)
        server.proc.terminate()  # SIGTERM
        errors = {}
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = await client.recv()
                if message["type"] == "error":
                    errors[message["id"]] = message
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert set(errors) == {"a", "b"}
        assert all(e["code"] == "server_shutdown" and e["retryable"] for e in errors.values())
        last = None
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                last = json.loads(await asyncio.wait_for(tutorial.recv(), 10))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert last is not None and last["type"] == "error" and "shutting down" in last["message"]
        events = await asyncio.wait_for(sse, 10)
        assert events[-1]["event"] == "error"
        assert events[-1]["data"]["code"] == "server_shutdown"
    assert await asyncio.to_thread(server.proc.wait, 10) == 0
    entries = ledger.wait(4, outcome="client_disconnected")
    assert len(entries) == 4
    log = server.log.read_text()
    assert "Traceback" not in log, log


async def test_streamharness_server_subcommand_help() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streamharness.cli", "server", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "--upstream" in result.stdout


async def test_cli_rejects_bad_settings() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "reference_server", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "port" in result.stderr


@pytest.mark.slow
async def test_leak_check_hundreds_of_abrupt_drops(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    # Silent clients: on a busy machine opening 300 of them can outlast the heartbeat timeout
    # (30 s), which would close the first ones; liveness is not what this test judges.
    server = server_factory(resume_grace_s=0.3, stream_retention_s=0.3, heartbeat_timeout_s=600)
    count = 300
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        idle = await stats_of(http)
        gate = asyncio.Semaphore(50)

        async def one(n: int) -> V1Client:
            async with gate:
                client = await V1Client.open(server.ws_url, f"leak-{n}")
                await client.chat("s", prompt(f"leak {n}", tokens=2000, itl_ms=100))
                await client.collect("s", stop_after_tokens=1, wait_s=30)
                return client

        clients = await asyncio.gather(*(one(n) for n in range(count)))
        try:
            busy = await stats_of(http)
            assert busy["connections"] == count and busy["active_generations"] == count
            assert busy["upstream_connections"] == count
        finally:
            # Also when an assertion failed: 300 unclosed sockets would otherwise be
            # garbage-collected (ResourceWarning) in whatever test runs next.
            for client in clients:
                client.ws.transport.abort()  # no close frame, mid-stream
        await asyncio.sleep(0)  # abort() closes the sockets in loop callbacks
        after = await poll_stats(
            http,
            lambda s: (
                s["connections"] == 0
                and s["active_generations"] == 0
                and s["upstream_connections"] == 0
                and s["streams"] == 0
                and s["sessions"] == 0
                and s["readers"] == 0
                and s["send_queue_bytes"] == 0
                and s["tasks"] == idle["tasks"]
                and s["event_loop_tasks"] == idle["event_loop_tasks"]
            ),
            wait_s=30,
        )
        assert after["totals"]["abandoned"] == count
    assert len(ledger.wait(count, outcome="client_disconnected", timeout=30)) == count


async def test_abandoned_sse_and_polling_streams_are_stopped(
    server_factory: ServerFactory, ledger: Ledger
) -> None:
    server = server_factory(http_stream_idle_s=0.5, stream_retention_s=0.3)
    count = 20
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        idle = await stats_of(http)
        # Half are read over SSE and dropped mid-stream, half are polled once and forgotten.
        # Each is read right after its creation: a stream nobody reads for idle + retention
        # (0.8 s) is already gone (410), which creating all twenty first can take on a busy box.
        for n in range(count):
            info = await create(http, messages=prompt(f"sse {n}", tokens=2000, itl_ms=50))
            if n < count // 2:
                await read_events(http, info["events_url"], stop_after=1)
            else:
                assert (await http.get(info["tokens_url"])).status_code == 200
        await poll_stats(
            http,
            lambda s: (
                s["streams"] == 0
                and s["active_generations"] == 0
                and s["upstream_connections"] == 0
                and s["sse_readers"] == 0
                and s["tasks"] == idle["tasks"]
            ),
            wait_s=20,
        )
    assert len(ledger.wait(count, outcome="client_disconnected")) == count


async def test_a_chat_cancelled_in_the_same_read_leaves_nothing_behind(
    server_factory: ServerFactory,
) -> None:
    # The generation task is cancelled before its first step: its coroutine's own cleanup never
    # runs, and the provider never sees the request.
    server = server_factory()
    client = await V1Client.open(server.ws_url, "same-read")
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        idle = await stats_of(http)
        await client.chat("warm", prompt("warm", tokens=2))
        warm = await client.collect("warm")  # the socket is set up and serving
        assert warm.terminal is not None and warm.terminal["type"] == "end"
        chat = {"type": "chat", "id": "quick", "messages": prompt("quick", tokens=50, itl_ms=50)}
        cancel = {"type": "cancel", "id": "quick"}
        # Both frames in one write: one TCP segment, one read on the server.
        protocol = client.ws.protocol
        protocol.send_text(json.dumps(chat).encode())
        protocol.send_text(json.dumps(cancel).encode())
        client.ws.transport.write(b"".join(protocol.data_to_send()))
        quick = await client.collect("quick")
        assert quick.terminal is not None and quick.terminal["type"] == "cancelled"
        assert quick.tokens == []
        after = await poll_stats(
            http,
            lambda s: s["active_generations"] == 0 and s["upstream_connections"] == 0,
        )
        assert after["totals"]["cancelled"] == 1
        assert after["tasks"] == idle["tasks"]
        assert after["totals"]["upstream_requests"] == 1  # the warm-up only
        await client.assert_usable()
    await client.close()

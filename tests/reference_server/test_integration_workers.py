"""Several workers, one stream: two servers share a Redis store (each on its own port, so a
test chooses which worker a reconnect reaches), and ``--workers N`` on one port.

The cross-worker tests run on both stores: on the in-memory store they must fail (strict
xfail), which proves they catch the bug a shared store fixes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.reference_server.live import BASE_ENV, Ledger, Process, ServerFactory
from tests.reference_server.redisproc import RedisProcess
from tests.reference_server.wsclient import Received, V1Client, assert_dense, prompt
from tests.support import wait_for_async

pytestmark = pytest.mark.integration

MEMORY_FAILS = pytest.mark.xfail(
    strict=True, reason="streams in one worker's memory are unknown to the other worker"
)


@pytest.fixture(params=[pytest.param("memory", marks=MEMORY_FAILS), "redis"])
def two_workers(
    request: pytest.FixtureRequest, server_factory: ServerFactory
) -> Iterator[tuple[Process, Process]]:
    settings: dict[str, object] = {"resume_grace_s": 5}
    if request.param == "redis":
        redis: RedisProcess = request.getfixturevalue("redis_server")
        settings.update(store=redis.url, redis_key_prefix=f"w{secrets.token_hex(4)}:")
    first, second = server_factory(**settings), server_factory(**settings)
    yield first, second
    first.stop()
    second.stop()


async def _resume_on(worker: Process, seen: Received, after: int) -> V1Client:
    """A new socket on ``worker`` that resumes the stream ``seen`` started, after ``after``."""
    assert seen.start is not None
    client = await V1Client.open(worker.ws_url)
    await client.send(
        type="resume",
        stream_id=seen.start["stream_id"],
        after=after,
        resume_token=seen.start["resume_token"],
    )
    return client


async def test_resume_on_the_other_worker_gets_every_token_once(
    two_workers: tuple[Process, Process], ledger: Ledger
) -> None:
    a, b = two_workers
    first = await V1Client.open(a.ws_url)
    await first.chat("q", prompt("resume elsewhere", tokens=60, itl_ms=15))
    seen = await first.collect("q", stop_after_tokens=10)
    assert seen.start is not None
    await first.drop()
    second = await _resume_on(b, seen, after=9)
    rest = await second.collect("q")
    assert rest.terminal is not None and rest.terminal["type"] == "end", rest.terminal
    assert_dense(seen.indexes + rest.indexes, 60)
    assert len(ledger.requests()) == 1
    await second.close()


async def test_resend_on_the_other_worker_is_one_generation(
    two_workers: tuple[Process, Process], ledger: Ledger
) -> None:
    a, b = two_workers
    first = await V1Client.open(a.ws_url)
    await first.chat("q", prompt("resend elsewhere", tokens=40, itl_ms=15))
    seen = await first.collect("q", stop_after_tokens=5)
    await first.drop()
    second = await V1Client.open(b.ws_url)
    await second.chat(
        "q",
        prompt("resend elsewhere", tokens=40, itl_ms=15),
        resume_token=first.hello["resume_token"],
        after=4,
    )
    rest = await second.collect("q")
    assert rest.start is not None and rest.start["replay"] is True, rest.start
    assert rest.terminal is not None and rest.terminal["type"] == "end", rest.terminal
    assert_dense(seen.indexes + rest.indexes, 40)
    assert len(ledger.requests()) == 1
    await second.close()


async def test_cancel_on_the_other_worker_stops_the_upstream(
    two_workers: tuple[Process, Process], ledger: Ledger
) -> None:
    a, b = two_workers
    first = await V1Client.open(a.ws_url)
    await first.chat("q", prompt("cancel elsewhere", tokens=2000, itl_ms=20))
    seen = await first.collect("q", stop_after_tokens=3)
    assert seen.start is not None
    await first.drop()
    second = await _resume_on(b, seen, after=2)
    await second.collect("q", stop_after_tokens=1)
    await second.send(type="cancel", id="q")
    end = await second.collect("q")
    assert end.terminal is not None and end.terminal["type"] == "cancelled", end.terminal
    entries = ledger.wait(1, outcome="client_disconnected", timeout=5)
    assert len(entries) == 1 and len(ledger.requests()) == 1
    async with httpx.AsyncClient(base_url=a.url) as http:
        stats = (await http.get("/stats")).json()
    assert stats["active_generations"] == 0
    await second.close()


async def test_the_end_is_not_lost_for_a_resume_after_the_last_token(
    two_workers: tuple[Process, Process],
) -> None:
    a, b = two_workers
    first = await V1Client.open(a.ws_url)
    await first.chat("q", prompt("short", tokens=5, itl_ms=1))
    done = await first.collect("q")
    assert done.start is not None and done.terminal is not None
    await first.close()
    second = await _resume_on(b, done, after=4)
    rest = await second.collect("q", wait_s=5)
    assert rest.tokens == [] and rest.terminal is not None and rest.terminal["type"] == "end"
    await second.close()


def test_several_workers_need_a_shared_store() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reference_server", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **BASE_ENV},
    )
    assert result.returncode == 2
    assert "needs a shared store" in result.stderr and "redis://" in result.stderr


async def test_workers_share_a_port_and_shut_down_gracefully(
    server_factory: ServerFactory, redis_server: RedisProcess
) -> None:
    server = server_factory(
        workers=2, store=redis_server.url, redis_key_prefix=f"w{secrets.token_hex(4)}:"
    )

    async def pids() -> set[int]:
        found: set[int] = set()
        for _ in range(8):  # a fresh connection each: the kernel hands it to either worker
            async with httpx.AsyncClient(base_url=server.url) as http:
                found.add((await http.get("/stats")).json()["pid"])
        return found

    await wait_for_async(pids, 20, what="both workers answering", until=lambda p: len(p) == 2)
    client = await V1Client.open(server.ws_url)
    await client.chat("q", prompt("long", tokens=1000, itl_ms=20))
    await client.collect("q", stop_after_tokens=1)
    server.proc.terminate()
    errors = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = await client.recv()
            if message["type"] == "error":
                errors.append(message)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert [(e["code"], e["retryable"]) for e in errors] == [("server_shutdown", True)]
    assert await asyncio.to_thread(server.proc.wait, 15) == 0
    assert "Traceback" not in server.log.read_text()

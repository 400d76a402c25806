"""What only the shared (Redis) store does: one owner per chat, cancels and touches reaching
the owner, a dead owner or a dead Redis turning into a retryable error, and its bounds.

Two stores on one private redis-server play two workers; the contract both stores share is
``test_store_contract.py``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest

from reference_server.redis_store import OWNER_LOST, STORE_UNAVAILABLE, RedisStreamStore
from reference_server.state import StreamState
from reference_server.streams import Outcome
from tests.reference_server.redisproc import RedisProcess, start_redis
from tests.reference_server.test_store_contract import (
    FakeOwner,
    collect,
    finish,
    new_record,
    publish,
    redis_store,
    token,
)
from tests.support import wait_for_async

Workers = tuple[RedisStreamStore, FakeOwner, RedisStreamStore, FakeOwner]


@pytest.fixture
async def workers(redis_server: RedisProcess) -> AsyncIterator[Workers]:
    prefix = f"t{secrets.token_hex(4)}:"
    a, b = redis_store(redis_server.url, prefix), redis_store(redis_server.url, prefix)
    owner_a, owner_b = FakeOwner(), FakeOwner()
    await a.start(owner_a)
    await b.start(owner_b)
    yield a, owner_a, b, owner_b
    await a.close()
    await b.close()


async def test_only_one_worker_claims_a_chat(workers: Workers) -> None:
    a, _, b, _ = workers
    first, second = new_record(), new_record()
    a.add(first)
    b.add(second)
    assert await a.claim(first) is True
    assert await b.claim(second) is False
    # The loser forgets its record under that chat: the resend finds the winner's stream.
    found = await b.load_chat("S1", "c1")
    assert found is not None and found.stream_id == first.stream_id


async def test_a_cancel_on_a_mirror_reaches_the_owner(workers: Workers) -> None:
    a, owner_a, b, owner_b = workers
    record = new_record()
    await publish(a, record)
    mirror = await b.load_stream(record.stream_id)
    assert mirror is not None and b.is_mirror(mirror) and not a.is_mirror(record)
    b.request_cancel(mirror)
    await wait_for_async(lambda: owner_a.cancels, 5, what="cancel at the owner")
    assert owner_a.cancels == [record.stream_id] and owner_b.cancels == []


async def test_a_read_mirror_keeps_its_stream_alive_at_the_owner(workers: Workers) -> None:
    a, owner_a, b, _ = workers
    record = new_record()
    await publish(a, record)
    mirror = await b.load_stream(record.stream_id)
    assert mirror is not None
    await wait_for_async(lambda: owner_a.touches, 5, what="touch when mirrored")
    owner_a.touches.clear()
    mirror.readers = 1  # a reader on worker b
    await wait_for_async(lambda: owner_a.touches, 5, what="touch from housekeeping")


async def test_a_dead_owner_fails_its_mirrors_and_frees_the_chat(workers: Workers) -> None:
    a, _, b, _ = workers
    record = new_record()
    await publish(a, record)
    token(a, record, "x")
    mirror = await b.load_stream(record.stream_id)
    assert mirror is not None
    # Worker a dies: nothing renews its lease any more.
    for task in a._tasks:
        task.cancel()
    await a.redis.delete(a._k("l", record.stream_id))
    items = await collect(mirror, -1)
    assert items[-1].state is StreamState.FAILED  # type: ignore[attr-defined]
    assert items[-1].error_code == OWNER_LOST and items[-1].retryable  # type: ignore[attr-defined]

    async def chat_freed() -> bool:
        return (await b.redis.get(b._k("c", "S1", "c1"))) is None

    await wait_for_async(chat_freed, 5, what="idempotency key freed")


async def test_finished_streams_and_sessions_carry_ttls(workers: Workers) -> None:
    a, _, _, _ = workers
    record = new_record()
    await publish(a, record)
    token(a, record, "x")
    assert 0 < await a.redis.pttl(a._k("c", "S1", "c1")) <= 20_000
    finish(a, record)
    await a.flush()
    for key in (a._k("e", record.stream_id), a._k("m", record.stream_id), a._k("c", "S1", "c1")):
        assert 0 < await a.redis.pttl(key) <= 5_000, key
    assert not await a.redis.exists(a._k("l", record.stream_id))


async def test_tokens_written_with_the_end_keep_the_retention_ttl(workers: Workers) -> None:
    a, _, _, _ = workers
    record = new_record()
    await publish(a, record)
    token(a, record, "x")
    finish(a, record)
    await a.flush()  # the token and the end in one batch
    assert 0 < await a.redis.pttl(a._k("e", record.stream_id)) <= 5_000


async def test_a_stream_keeps_at_most_max_events(redis_server: RedisProcess) -> None:
    store = redis_store(redis_server.url, f"t{secrets.token_hex(4)}:", max_events=5)
    await store.start(FakeOwner())
    try:
        record = new_record()
        await publish(store, record)
        for i in range(12):
            token(store, record, str(i))
        await store.flush()
        assert await store.redis.xlen(store._k("e", record.stream_id)) == 5
    finally:
        await store.close()


async def test_redis_unreachable_fails_a_new_chat_at_once(redis_server: RedisProcess) -> None:
    from mockllm.childproc import free_port

    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", "t:")
    started = time.monotonic()
    await store.start(FakeOwner())
    record = new_record()
    store.add(record)
    assert await store.claim(record) is False
    assert record.outcome is not None and record.outcome.error_code == STORE_UNAVAILABLE
    assert record.outcome.retryable
    await store.close()
    assert time.monotonic() - started < 10


async def test_redis_lost_mid_stream_fails_owner_and_mirror_then_recovers(
    tmp_path: object,
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    server = start_redis(tmp_path)
    a, b = redis_store(server.url, "t:"), redis_store(server.url, "t:")
    owner_a = FakeOwner()
    try:
        await a.start(owner_a)
        await b.start(FakeOwner())
        record = new_record()
        await publish(a, record)
        token(a, record, "x")
        mirror = await b.load_stream(record.stream_id)
        assert mirror is not None
        await wait_for_async(lambda: len(mirror.buffer) == 1, 5, what="first token mirrored")
        server.stop()
        token(a, record, "y")  # its write fails: the owner learns Redis is gone
        items = await collect(mirror, 0)
        assert isinstance(items[-1], Outcome) and items[-1].error_code == STORE_UNAVAILABLE
        await wait_for_async(lambda: owner_a.failed, 10, what="owner told to stop")
        assert record.outcome is not None and record.outcome.error_code == STORE_UNAVAILABLE
        assert record.outcome.retryable
        # Redis back: the next chat works.
        server.start_again()
        again = new_record(chat_id="c2")
        a.add(again)
        assert await a.claim(again) is True
    finally:
        await a.close()
        await b.close()
        server.stop()

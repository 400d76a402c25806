"""One contract for every stream store: the in-memory one and the Redis one.

Each test gets a ``pair`` of stores as two workers see them: for the in-memory store both are
the same object (one process), for Redis two stores on one private redis-server. What worker
``a`` writes, worker ``b`` must find, follow and see end, exactly as the one-process store does.
The manager's duties on a shared store (claim, replicate, end) are done by the helpers below the
way ``manager.py`` does them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from reference_server.redis_store import RedisStreamStore
from reference_server.state import StreamState
from reference_server.streams import (
    InMemoryStreamStore,
    Outcome,
    Session,
    SharedStreamStore,
    StreamRecord,
    StreamStore,
    TokenEvent,
)
from tests.reference_server.redisproc import RedisProcess


class FakeOwner:
    """The manager's side of a shared store, recording what the store asked for."""

    def __init__(self) -> None:
        self.cancels: list[str] = []
        self.touches: list[str] = []
        self.failed: list[str] = []

    def remote_cancel(self, stream_id: str) -> None:
        self.cancels.append(stream_id)

    def remote_touch(self, stream_id: str) -> None:
        self.touches.append(stream_id)

    def store_failed(self, record: StreamRecord) -> None:
        self.failed.append(record.stream_id)


def redis_store(url: str, prefix: str, **kwargs: float) -> RedisStreamStore:
    options: dict[str, float] = {
        "session_ttl_s": 10.0,
        "live_ttl_s": 20.0,
        "retention_s": 5.0,
        "lease_s": 2.0,
    }
    options.update(kwargs)
    return RedisStreamStore(url, prefix=prefix, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[StreamStore, StreamStore]]:
    if request.param == "memory":
        store = InMemoryStreamStore()
        yield store, store
        return
    server: RedisProcess = request.getfixturevalue("redis_server")
    prefix = f"t{secrets.token_hex(4)}:"
    a, b = redis_store(server.url, prefix), redis_store(server.url, prefix)
    await a.start(FakeOwner())
    await b.start(FakeOwner())
    yield a, b
    await a.close()
    await b.close()


def new_record(chat_id: str = "c1", session_id: str = "S1") -> StreamRecord:
    return StreamRecord(
        stream_id=secrets.token_urlsafe(9),
        chat_id=chat_id,
        session_id=session_id,
        resume_token=secrets.token_urlsafe(12),
        created_at=0.0,
        idle_limit_s=5.0,
    )


async def add_session(store: StreamStore, session: Session) -> None:
    """As the WebSocket transport does: the session is stored before ``hello`` names it."""
    store.add_session(session)
    if isinstance(store, SharedStreamStore):
        await store.flush()


async def publish(store: StreamStore, record: StreamRecord) -> None:
    store.add(record)
    if isinstance(store, SharedStreamStore):
        assert await store.claim(record)


def token(store: StreamStore, record: StreamRecord, content: str) -> None:
    event = record.add_token(content)
    if isinstance(store, SharedStreamStore):
        store.appended(record, event)


def finish(store: StreamStore, record: StreamRecord) -> None:
    record.finish(1.0, "stop", {"completion_tokens": len(record.buffer)})
    if isinstance(store, SharedStreamStore):
        store.ended(record)


async def collect(record: StreamRecord, after: int) -> list[object]:
    items: list[object] = []
    async with asyncio.timeout(10):
        async for item in record.follow(after):
            items.append(item)
    return items


async def test_a_session_is_found_by_id_and_by_token(pair: tuple[StreamStore, StreamStore]) -> None:
    a, b = pair
    await add_session(a, Session("sess1", "client-1", "rt-secret"))
    found = await b.load_session_by_token("rt-secret")
    assert found is not None
    assert (found.session_id, found.client_id, found.resume_token) == (
        "sess1",
        "client-1",
        "rt-secret",
    )
    assert (await b.load_session("sess1")) is not None
    assert b.session_by_token("rt-secret") is not None  # now in b's own view
    assert await b.load_session_by_token("rt-other") is None
    assert await b.load_session("nope") is None


async def test_a_chat_is_found_by_session_and_id(pair: tuple[StreamStore, StreamStore]) -> None:
    a, b = pair
    record = new_record()
    await publish(a, record)
    found = await b.load_chat("S1", "c1")
    assert found is not None
    assert (found.stream_id, found.resume_token) == (record.stream_id, record.resume_token)
    assert b.find("S1", "c1") is found
    assert (await b.load_stream(record.stream_id)) is found
    assert await b.load_chat("S1", "other") is None
    assert await b.load_chat("S2", "c1") is None


async def test_follow_after_an_index_gives_each_later_token_once_then_the_end(
    pair: tuple[StreamStore, StreamStore],
) -> None:
    a, b = pair
    record = new_record()
    await publish(a, record)
    for text in ("a", "b", "c"):
        token(a, record, text)
    seen = await b.load_stream(record.stream_id)
    assert seen is not None
    follower = asyncio.create_task(collect(seen, 0))
    for text in ("d", "e"):
        token(a, record, text)
    finish(a, record)
    items = await follower
    assert items[:-1] == [
        TokenEvent(1, "b"),
        TokenEvent(2, "c"),
        TokenEvent(3, "d"),
        TokenEvent(4, "e"),
    ]
    assert items[-1] == Outcome(StreamState.ENDED, "stop", {"completion_tokens": 5})


async def test_the_end_is_never_lost_after_the_last_token(
    pair: tuple[StreamStore, StreamStore],
) -> None:
    a, b = pair
    record = new_record()
    await publish(a, record)
    token(a, record, "only")
    finish(a, record)
    seen = await b.load_stream(record.stream_id)
    assert seen is not None
    assert await collect(seen, 0) == [Outcome(StreamState.ENDED, "stop", {"completion_tokens": 1})]


async def test_a_removed_stream_is_expired_not_unknown(
    pair: tuple[StreamStore, StreamStore],
) -> None:
    a, b = pair
    record = new_record()
    await publish(a, record)
    finish(a, record)
    a.remove(record.stream_id)
    assert a.get(record.stream_id) is None and a.expired(record.stream_id)

    async def gone_at_b() -> bool:
        # Another worker's view may still hold it (a mirror) until it drops it; Redis
        # answers from the tombstone.
        found = await b.load_stream(record.stream_id)
        return found is None and b.expired(record.stream_id)

    from tests.support import wait_for_async

    if a is b:
        assert await gone_at_b()
    else:
        await wait_for_async(gone_at_b, 5, what="tombstone seen by the other worker")
    assert not b.expired("never-existed")
    assert await b.load_stream("never-existed") is None

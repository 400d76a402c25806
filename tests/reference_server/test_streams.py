"""Replay buffer, stream records (follow) and the in-memory store."""

from __future__ import annotations

import asyncio

import pytest

from reference_server.state import InvalidTransition, StreamState
from reference_server.streams import (
    HEARTBEAT,
    InMemoryStreamStore,
    Outcome,
    ReplayBuffer,
    Session,
    StreamRecord,
    TokenEvent,
    ToolCallEvent,
)


def record(stream_id: str = "s1", chat_id: str = "c1", session_id: str = "S") -> StreamRecord:
    return StreamRecord(
        stream_id=stream_id,
        chat_id=chat_id,
        session_id=session_id,
        resume_token="t",
        created_at=0.0,
        idle_limit_s=1.0,
    )


def test_replay_buffer_indexes_are_dense_and_shared() -> None:
    buffer = ReplayBuffer()
    assert buffer.last_index == -1
    buffer.append_token("a")
    buffer.append_tool_call(0, "call_1", "f", "")
    buffer.append_token("b")
    assert buffer.after(-1) == [
        TokenEvent(0, "a"),
        ToolCallEvent(1, 0, "call_1", "f", ""),
        TokenEvent(2, "b"),
    ]
    assert buffer.after(1) == [TokenEvent(2, "b")]
    assert buffer.after(2) == []
    assert buffer.after(99) == []
    assert buffer.text() == "ab"


def test_record_transitions() -> None:
    rec = record()
    rec.add_token("x")
    assert rec.state is StreamState.STREAMING
    rec.finish(1.0, "stop", {"completion_tokens": 1})
    assert rec.terminal and rec.ended_at == 1.0
    assert rec.outcome == Outcome(StreamState.ENDED, "stop", {"completion_tokens": 1})
    assert rec.cancel(2.0) is False
    with pytest.raises(InvalidTransition):
        rec.add_token("late")


async def collect(rec: StreamRecord, after: int) -> list[object]:
    return [item async for item in rec.follow(after)]


async def test_follow_replays_then_goes_live_then_ends() -> None:
    rec = record()
    rec.add_token("a")
    rec.add_token("b")
    reader = asyncio.ensure_future(collect(rec, 0))
    await asyncio.sleep(0)
    rec.add_token("c")
    await asyncio.sleep(0)
    rec.finish(1.0, "stop", None)
    items = await asyncio.wait_for(reader, 1)
    assert items == [TokenEvent(1, "b"), TokenEvent(2, "c"), Outcome(StreamState.ENDED, "stop")]


async def test_follow_of_cancelled_stream_stops_at_once() -> None:
    rec = record()
    rec.add_token("a")
    rec.cancel(1.0)
    items = await collect(rec, -1)
    assert len(items) == 1 and isinstance(items[0], Outcome)
    assert items[0].state is StreamState.CANCELLED


async def test_follow_delivers_all_tokens_before_failure() -> None:
    rec = record()
    rec.add_token("a")
    rec.fail(1.0, "upstream_error", "boom", True)
    items = await collect(rec, -1)
    assert items[0] == TokenEvent(0, "a")
    assert items[1] == Outcome(
        StreamState.FAILED, error_code="upstream_error", error_message="boom", retryable=True
    )


async def test_follow_heartbeats_when_quiet() -> None:
    rec = record()
    follower = rec.follow(-1, heartbeat_s=0.01)
    assert await asyncio.wait_for(anext(follower), 1) is HEARTBEAT
    rec.add_token("a")
    assert await asyncio.wait_for(anext(follower), 1) == TokenEvent(0, "a")
    await follower.aclose()


def test_store_find_remove_tombstone() -> None:
    store = InMemoryStreamStore(max_tombstones=1)
    rec = record()
    store.add(rec)
    assert store.get("s1") is rec
    assert store.find("S", "c1") is rec
    assert store.find("other", "c1") is None
    store.remove("s1")
    assert store.get("s1") is None and store.find("S", "c1") is None
    assert store.expired("s1")
    store.add(record("s2", "c2"))
    store.remove("s2")
    assert store.expired("s2") and not store.expired("s1")  # bounded tombstones


def test_store_sessions_by_token() -> None:
    store = InMemoryStreamStore()
    session = Session("S", "client", "secret")
    store.add_session(session)
    assert store.session_by_token("secret") is session
    assert store.session_by_token("nope") is None
    store.remove_session("S")
    assert store.session_by_token("secret") is None and store.sessions() == []

"""Expiry and reader bookkeeping of the stream manager, with a fake clock (no sockets)."""

from __future__ import annotations

from typing import cast

from reference_server.manager import StreamManager, build_upstream_body
from reference_server.settings import Settings
from reference_server.state import StreamState
from reference_server.streams import InMemoryStreamStore, Session, StreamRecord
from reference_server.upstream import UpstreamClient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(grace: float = 2.0, retention: float = 5.0) -> tuple[StreamManager, Clock]:
    clock = Clock()
    settings = Settings(resume_grace_s=grace, stream_retention_s=retention)
    # reap/attach/detach never touch the upstream client.
    manager = StreamManager(settings, InMemoryStreamStore(), cast(UpstreamClient, None), clock)
    return manager, clock


def add(manager: StreamManager, stream_id: str, idle_limit_s: float) -> StreamRecord:
    record = StreamRecord(
        stream_id=stream_id,
        chat_id="c",
        session_id="S",
        resume_token="t",
        created_at=manager.clock(),
        idle_limit_s=idle_limit_s,
        idle_since=manager.clock(),
    )
    manager.store.add(record)
    manager.track(record)
    return record


def test_stream_without_reader_expires_after_its_idle_limit() -> None:
    manager, clock = make()
    record = add(manager, "s", idle_limit_s=2.0)
    manager.attach(record)
    clock.now += 10
    manager.reap(clock.now)
    assert not record.terminal  # a reader is attached
    manager.detach(record)
    clock.now += 1.9
    manager.reap(clock.now)
    assert not record.terminal
    clock.now += 0.2
    manager.reap(clock.now)
    assert record.state is StreamState.CANCELLED
    assert record.outcome is not None and record.outcome.error_code == "stream_expired"
    assert manager.totals["abandoned"] == 1


def test_zero_grace_expires_on_detach() -> None:
    manager, _ = make(grace=0)
    record = add(manager, "s", idle_limit_s=0)
    manager.attach(record)
    manager.detach(record)
    assert record.state is StreamState.CANCELLED


def test_polling_touch_restarts_the_idle_clock() -> None:
    manager, clock = make()
    record = add(manager, "s", idle_limit_s=2.0)
    clock.now += 1.5
    manager.touch(record)
    clock.now += 1.5
    manager.reap(clock.now)
    assert not record.terminal


def test_finished_streams_are_dropped_after_retention_with_a_tombstone() -> None:
    manager, clock = make(retention=5.0)
    record = add(manager, "s", idle_limit_s=2.0)
    record.finish(clock.now, "stop", None)
    clock.now += 4.9
    manager.reap(clock.now)
    assert manager.store.get("s") is record
    clock.now += 0.2
    manager.reap(clock.now)
    assert manager.store.get("s") is None and manager.store.expired("s")


def test_idle_sessions_are_dropped() -> None:
    manager, clock = make(grace=1.0, retention=1.0)
    manager.store.add_session(Session("S", "client", "secret", connections=0, last_seen=clock.now))
    manager.store.add_session(Session("T", "client", "other", connections=1, last_seen=clock.now))
    clock.now += 2
    manager.reap(clock.now)
    assert [s.session_id for s in manager.store.sessions()] == ["T"]


def test_cancel_is_idempotent() -> None:
    manager, _ = make()
    record = add(manager, "s", idle_limit_s=2.0)
    assert manager.cancel(record) is True
    assert manager.cancel(record) is False
    assert record.outcome is not None and record.outcome.error_code == "cancelled"


def test_upstream_body_drops_unset_fields() -> None:
    body = build_upstream_body(
        model=None, default_model="m", messages=[{"role": "user"}], max_tokens=5
    )
    assert body == {"model": "m", "messages": [{"role": "user"}], "max_tokens": 5}


def test_a_finished_stream_being_replayed_stays_past_retention_then_goes() -> None:
    manager, clock = make(retention=5.0)
    early = add(manager, "early", idle_limit_s=2.0)
    late = add(manager, "late", idle_limit_s=2.0)
    early.finish(clock.now, "stop", None)
    manager.reap(clock.now)
    clock.now += 3
    late.finish(clock.now, "stop", None)
    manager.attach(early)  # a reader replays it
    clock.now += 2.5  # early is due (5.5 s), late is not (2.5 s)
    manager.reap(clock.now)
    assert manager.store.get("early") is early and manager.store.get("late") is late
    manager.detach(early)
    manager.reap(clock.now)
    assert manager.store.get("early") is None and manager.store.get("late") is late
    clock.now += 2.6
    manager.reap(clock.now)
    assert manager.store.get("late") is None


def test_a_session_stays_while_it_holds_a_stream() -> None:
    manager, clock = make(grace=1.0, retention=10.0)
    manager.store.add_session(Session("S", "client", "secret", connections=0, last_seen=clock.now))
    record = add(manager, "s", idle_limit_s=1.0)  # session "S"
    record.finish(clock.now, "stop", None)
    clock.now += 10.5  # the session is idle long enough, but its stream is retained...
    manager.reap(clock.now)  # ...until this pass removes the stream; the session goes next
    assert manager.store.get("s") is None
    manager.reap(clock.now)
    assert manager.store.sessions() == []


def test_a_pass_does_not_visit_finished_streams_that_are_not_due() -> None:
    manager, clock = make(retention=60.0)
    records = [add(manager, f"s{i}", idle_limit_s=1.0) for i in range(1000)]
    for record in records:
        record.finish(clock.now, "stop", None)
    manager.reap(clock.now)  # noticed once, queued in end order
    visited: list[str] = []

    class Spy(StreamRecord):
        @property
        def terminal(self) -> bool:
            visited.append(self.stream_id)
            return super().terminal

    live = Spy(stream_id="live", chat_id="c", session_id="S", resume_token="t",
               created_at=clock.now, idle_limit_s=100.0, idle_since=clock.now)  # fmt: skip
    manager.store.add(live)
    manager.track(live)
    clock.now += 1
    for record in records:
        record.__class__ = Spy  # a visit to any finished stream would be recorded
    manager.reap(clock.now)
    assert set(visited) == {"live"}  # the live stream only, none of the 1,000 finished

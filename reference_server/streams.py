"""Stream state: the replay buffer, stream records, sessions and the store interface.

A stream outlives the socket that started it: its tokens go into a :class:`ReplayBuffer`, and
any number of readers (a WebSocket subscription, an SSE response, a poll) follow it from an
index. The :class:`StreamStore` protocol is what the session rules and transports read;
:class:`InMemoryStreamStore` is the one-process implementation, and
:class:`SharedStreamStore` (``redis_store.py``) what several workers need on top: claiming a
chat, replicating an owned stream's events, and cancelling another worker's stream. The
``load_*`` methods are the only awaits: a shared store fetches what another worker wrote
before the synchronous lookups see it; the in-memory one just looks.

``ReplayBuffer`` and the store are pure. ``StreamRecord.follow`` is the one place that waits
(an ``asyncio.Event`` set and dropped on every change, created only when a reader waits), because
readers must sleep until new data.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from reference_server.state import TERMINAL, StreamInput, StreamState, transition

__all__ = [
    "HEARTBEAT",
    "BufferedEvent",
    "InMemoryStreamStore",
    "Outcome",
    "ReplayBuffer",
    "Session",
    "SharedStreamStore",
    "StreamRecord",
    "StreamStore",
    "TokenEvent",
    "ToolCallEvent",
]


@dataclass(frozen=True, slots=True)
class TokenEvent:
    index: int
    content: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    index: int
    call_index: int
    call_id: str | None
    name: str | None
    arguments: str


BufferedEvent = TokenEvent | ToolCallEvent


@dataclass(frozen=True)
class Outcome:
    """How a stream ended: the last thing every reader receives."""

    state: StreamState
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False


class _Heartbeat:
    def __repr__(self) -> str:
        return "HEARTBEAT"


# Yielded by ``follow`` when nothing happened for ``heartbeat_s`` (SSE sends a comment).
HEARTBEAT = _Heartbeat()


class ReplayBuffer:
    """Every event of one stream, indexed densely from 0 (tokens and tool calls share indexes).

    Tokens are kept as bare strings and become :class:`TokenEvent` only when read. A server
    keeps every token of every stream for the resume grace period; strings are not tracked by
    the garbage collector and event objects are, and a full collection that walks hundreds of
    thousands of them stalls every stream on the server for 100 ms and more (measured at 500
    concurrent streams).
    """

    def __init__(self) -> None:
        self._events: list[str | ToolCallEvent] = []

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_index(self) -> int:
        """Index of the newest event, -1 when empty."""
        return len(self._events) - 1

    def append_token(self, content: str) -> TokenEvent:
        index = len(self._events)
        self._events.append(content)
        return TokenEvent(index, content)

    def append_tool_call(
        self, call_index: int, call_id: str | None, name: str | None, arguments: str
    ) -> ToolCallEvent:
        event = ToolCallEvent(len(self._events), call_index, call_id, name, arguments)
        self._events.append(event)
        return event

    def after(self, index: int) -> list[BufferedEvent]:
        """Events with an index greater than ``index`` (``-1`` = all), oldest first."""
        start = max(index + 1, 0)
        return [
            TokenEvent(i, e) if isinstance(e, str) else e
            for i, e in enumerate(self._events[start:], start)
        ]

    def __iter__(self) -> Iterator[BufferedEvent]:
        return iter(self.after(-1))

    def text(self) -> str:
        return "".join(e for e in self._events if isinstance(e, str))


@dataclass
class Session:
    """One WebSocket session: what a ``resume_token`` from ``hello`` proves."""

    session_id: str
    client_id: str
    resume_token: str
    connections: int = 0
    last_seen: float = 0.0


@dataclass(eq=False)
class StreamRecord:
    """One generation and everything a late reader needs to catch up with it."""

    stream_id: str
    chat_id: str
    session_id: str
    resume_token: str
    created_at: float
    # No reader for this long (seconds) and the generation is cancelled as abandoned.
    idle_limit_s: float
    state: StreamState = StreamState.STARTING
    buffer: ReplayBuffer = field(default_factory=ReplayBuffer)
    outcome: Outcome | None = None
    ended_at: float | None = None
    readers: int = 0
    # When the last reader left (or the stream was created/polled without a reader).
    idle_since: float | None = None
    # Created by the first reader that has to wait; set and dropped by the next change. A token
    # nobody waits for (readers behind, or none) then costs no Event of its own.
    _changed: asyncio.Event | None = field(default=None, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def _notify(self) -> None:
        # Wake every current waiter; later waiters create a fresh event.
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _change_event(self) -> asyncio.Event:
        """The event the next change sets. Take it right before awaiting (no yield between the
        check that found nothing new and the wait, so no change can slip in unseen)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def add_token(self, content: str) -> TokenEvent:
        self.state = transition(self.state, StreamInput.TOKEN)
        event = self.buffer.append_token(content)
        self._notify()
        return event

    def add_tool_call(
        self, call_index: int, call_id: str | None, name: str | None, arguments: str
    ) -> ToolCallEvent:
        self.state = transition(self.state, StreamInput.TOKEN)
        event = self.buffer.append_tool_call(call_index, call_id, name, arguments)
        self._notify()
        return event

    def finish(self, now: float, finish_reason: str | None, usage: dict[str, Any] | None) -> None:
        self.state = transition(self.state, StreamInput.FINISH)
        self.outcome = Outcome(self.state, finish_reason=finish_reason, usage=usage)
        self._close(now)

    def cancel(self, now: float, reason: str = "cancelled", code: str = "cancelled") -> bool:
        """Cancel unless already terminal; returns whether this call cancelled it.

        ``code`` is ``stream_expired`` when nobody came back within the grace period."""
        if self.terminal:
            return False
        self.state = transition(self.state, StreamInput.CANCEL)
        self.outcome = Outcome(self.state, error_code=code, error_message=reason)
        self._close(now)
        return True

    def fail(self, now: float, code: str, message: str, retryable: bool) -> bool:
        if self.terminal:
            return False
        self.state = transition(self.state, StreamInput.FAIL)
        self.outcome = Outcome(
            self.state, error_code=code, error_message=message, retryable=retryable
        )
        self._close(now)
        return True

    def _close(self, now: float) -> None:
        self.ended_at = now
        self._notify()

    async def wait_terminal(self) -> Outcome:
        while self.outcome is None:
            await self._change_event().wait()
        return self.outcome

    def _cancelled(self) -> bool:
        # A method, not an inline check: the state changes while ``follow`` is suspended.
        return self.state is StreamState.CANCELLED

    async def follow(
        self, after: int, *, heartbeat_s: float | None = None
    ) -> AsyncGenerator[BufferedEvent | Outcome | _Heartbeat, None]:
        """Buffered events after ``after``, then live ones, then the :class:`Outcome`.

        A cancelled stream stops at once (the reader asked to stop; buffered tokens it has not
        seen yet are not worth sending). Yields ``HEARTBEAT`` after ``heartbeat_s`` of silence.
        """
        cursor = after
        while True:
            if self._cancelled():
                assert self.outcome is not None
                yield self.outcome
                return
            pending = self.buffer.after(cursor)
            if pending:
                for event in pending:
                    yield event
                    cursor = event.index
                    if self._cancelled():
                        break
                continue
            if self.outcome is not None:
                yield self.outcome
                return
            changed = self._change_event()
            if heartbeat_s is None:
                await changed.wait()
                continue
            try:
                await asyncio.wait_for(changed.wait(), heartbeat_s)
            except TimeoutError:
                yield HEARTBEAT


class StreamStore(Protocol):
    """Where streams and sessions live. Small on purpose: a shared store implements this."""

    def add_session(self, session: Session) -> None: ...
    def get_session(self, session_id: str) -> Session | None: ...
    def session_by_token(self, resume_token: str) -> Session | None: ...
    def remove_session(self, session_id: str) -> None: ...
    def sessions(self) -> list[Session]: ...

    def add(self, record: StreamRecord) -> None: ...
    def get(self, stream_id: str) -> StreamRecord | None: ...
    def find(self, session_id: str, chat_id: str) -> StreamRecord | None: ...
    def remove(self, stream_id: str) -> None: ...
    def expired(self, stream_id: str) -> bool: ...
    def streams(self) -> list[StreamRecord]: ...

    # What another worker may hold: fetched (shared store) or looked up (in memory).
    async def load_session(self, session_id: str) -> Session | None: ...
    async def load_session_by_token(self, resume_token: str) -> Session | None: ...
    async def load_chat(self, session_id: str, chat_id: str) -> StreamRecord | None: ...
    async def load_stream(self, stream_id: str) -> StreamRecord | None: ...


class StoreOwner(Protocol):
    """What a shared store asks of the worker's stream manager (it holds the generations)."""

    def remote_cancel(self, stream_id: str) -> None: ...
    def remote_touch(self, stream_id: str) -> None: ...
    def store_failed(self, record: StreamRecord) -> None: ...


@runtime_checkable
class SharedStreamStore(StreamStore, Protocol):
    """A store several workers share: one owner generates each chat, the others follow it."""

    async def start(self, owner: StoreOwner) -> None: ...
    async def close(self) -> None: ...
    async def claim(self, record: StreamRecord) -> bool: ...
    async def flush(self) -> None: ...
    def appended(self, record: StreamRecord, event: BufferedEvent) -> None: ...
    def ended(self, record: StreamRecord) -> None: ...
    def is_mirror(self, record: StreamRecord) -> bool: ...
    def request_cancel(self, record: StreamRecord) -> None: ...


class InMemoryStreamStore:
    """One process, plain dicts. Removed streams leave a bounded tombstone (``expired``)."""

    def __init__(self, max_tombstones: int = 10_000) -> None:
        self._sessions: dict[str, Session] = {}
        self._by_token: dict[str, str] = {}
        self._streams: dict[str, StreamRecord] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._tombstones: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._max_tombstones = max_tombstones

    def add_session(self, session: Session) -> None:
        self._sessions[session.session_id] = session
        self._by_token[session.resume_token] = session.session_id

    def get_session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def session_by_token(self, resume_token: str) -> Session | None:
        session_id = self._by_token.get(resume_token)
        return None if session_id is None else self._sessions.get(session_id)

    def remove_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._by_token.pop(session.resume_token, None)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def add(self, record: StreamRecord) -> None:
        self._streams[record.stream_id] = record
        self._by_key[(record.session_id, record.chat_id)] = record.stream_id

    def get(self, stream_id: str) -> StreamRecord | None:
        return self._streams.get(stream_id)

    def find(self, session_id: str, chat_id: str) -> StreamRecord | None:
        stream_id = self._by_key.get((session_id, chat_id))
        return None if stream_id is None else self._streams.get(stream_id)

    def remove(self, stream_id: str) -> None:
        record = self._streams.pop(stream_id, None)
        if record is None:
            return
        key = (record.session_id, record.chat_id)
        if self._by_key.get(key) == stream_id:
            del self._by_key[key]
        self._tombstones[stream_id] = None
        while len(self._tombstones) > self._max_tombstones:
            self._tombstones.popitem(last=False)

    def expired(self, stream_id: str) -> bool:
        return stream_id in self._tombstones

    def streams(self) -> list[StreamRecord]:
        return list(self._streams.values())

    async def load_session(self, session_id: str) -> Session | None:
        return self.get_session(session_id)

    async def load_session_by_token(self, resume_token: str) -> Session | None:
        return self.session_by_token(resume_token)

    async def load_chat(self, session_id: str, chat_id: str) -> StreamRecord | None:
        return self.find(session_id, chat_id)

    async def load_stream(self, stream_id: str) -> StreamRecord | None:
        return self.get(stream_id)

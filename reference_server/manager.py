"""The stream manager: owns generations (one upstream request each), readers, expiry and stats.

Transports never call the provider themselves; they ask the manager for a stream and follow its
:class:`~reference_server.streams.StreamRecord`. A generation belongs to the manager, not to a
socket, which is what lets a stream outlive a disconnect for ``resume_grace_s``.

Expiry runs in one reaper loop (every 100 ms): a live stream without a reader for its idle limit
is cancelled (its upstream request closed); a finished stream is dropped after
``stream_retention_s``, leaving a tombstone so a late ``resume`` gets ``stream_expired``. A pass
costs the live streams plus the finished ones that are due, not every stream retained: at 250
streams/s the store holds 15k finished ones, and walking them all ten times a second took
several per cent of the server's CPU and stalled the loop for milliseconds each time.

With a shared store (several workers, ``redis_store.py``) a generation first claims its chat
(one owner per chat, whatever worker a resend reaches) and replicates every event; a stream
another worker owns is only followed here, and cancelling it asks its owner to stop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from reference_server.errors import UpstreamError
from reference_server.providers import (
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    UpstreamToolCall,
)
from reference_server.settings import Settings
from reference_server.streams import (
    BufferedEvent,
    Session,
    SharedStreamStore,
    StreamRecord,
    StreamStore,
)
from reference_server.upstream import UpstreamClient

__all__ = ["ManagedConnection", "StreamManager", "build_upstream_body", "upstream_body_of"]

logger = logging.getLogger(__name__)

REAP_INTERVAL_S = 0.1


class ManagedConnection(Protocol):
    """What the manager needs from a live WebSocket connection."""

    queue_bytes: int

    def queue_messages(self) -> int: ...
    async def shutdown(self) -> None: ...


def build_upstream_body(
    *,
    model: str | None,
    default_model: str,
    messages: list[dict[str, Any]],
    max_tokens: int | None = None,
    temperature: float | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The chat-completions request body (``stream`` flags are added by the upstream client)."""
    body: dict[str, Any] = {"model": model or default_model, "messages": messages}
    optional = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "tools": tools,
        "tool_choice": tool_choice,
        "metadata": metadata,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


class ChatFields(Protocol):
    """What a client's chat carries into the upstream body (v1, HTTP and tutorial requests)."""

    model: str | None
    messages: list[dict[str, Any]]
    max_tokens: int | None
    temperature: float | None
    metadata: dict[str, str] | None


def upstream_body_of(request: ChatFields, default_model: str) -> dict[str, Any]:
    """:func:`build_upstream_body` for a parsed request; one without tools sends none."""
    return build_upstream_body(
        model=request.model,
        default_model=default_model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        tools=getattr(request, "tools", None),
        tool_choice=getattr(request, "tool_choice", None),
        metadata=request.metadata,
    )


class StreamManager:
    def __init__(
        self,
        settings: Settings,
        store: StreamStore,
        upstream: UpstreamClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        # The shared store's extra duties, or None: the one-process path never pays for them.
        self.shared = store if isinstance(store, SharedStreamStore) else None
        self.upstream = upstream
        self.clock = clock
        self.shutting_down = False
        self.connections: set[ManagedConnection] = set()
        self.sse_readers = 0
        self.blocking_waiters = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generations: dict[str, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None
        # The reaper's view: streams not yet seen finished, finished ones in the order the
        # reaper noticed (so the due ones are at the front), and streams held per session.
        self._unsettled: dict[str, StreamRecord] = {}
        self._ended: collections.deque[StreamRecord] = collections.deque()
        self._held_per_session: collections.Counter[str] = collections.Counter()
        self.totals = {"streams": 0, "ws_connections": 0, "cancelled": 0, "abandoned": 0}

    # --- task bookkeeping: every task we start is counted, so /stats can prove none leak
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self) -> None:
        self._reaper = self.spawn(self._reap_loop(), "reaper")

    async def close(self) -> None:
        """Stop everything (after ``shutdown``); used by the app's lifespan."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- sessions
    def new_session(self, client_id: str) -> Session:
        session = Session(
            session_id=secrets.token_urlsafe(12),
            client_id=client_id,
            resume_token=secrets.token_urlsafe(24),
            last_seen=self.clock(),
        )
        self.store.add_session(session)
        return session

    # --- streams
    def create_stream(
        self, *, session_id: str, chat_id: str, body: dict[str, Any], idle_limit_s: float
    ) -> StreamRecord:
        now = self.clock()
        record = StreamRecord(
            stream_id=secrets.token_urlsafe(12),
            chat_id=chat_id,
            session_id=session_id,
            resume_token=secrets.token_urlsafe(24),
            created_at=now,
            idle_limit_s=idle_limit_s,
            idle_since=now,
        )
        self.store.add(record)
        self.track(record)
        self.totals["streams"] += 1
        task = self.spawn(self._generate(record, body), f"generate-{record.stream_id}")
        self._generations[record.stream_id] = task

        def ended(_: asyncio.Task[None]) -> None:
            # Not in the coroutine's ``finally``: a task cancelled before its first step (a
            # ``cancel`` read in the same turn as its ``chat``) never runs it.
            if self._generations.get(record.stream_id) is task:
                del self._generations[record.stream_id]

        task.add_done_callback(ended)
        return record

    def attach(self, record: StreamRecord) -> None:
        record.readers += 1
        record.idle_since = None

    def detach(self, record: StreamRecord) -> None:
        record.readers -= 1
        if record.readers > 0:
            return
        record.idle_since = self.clock()
        if not record.terminal and record.idle_limit_s <= 0:
            # No grace: stop the upstream request now rather than at the next reaper tick.
            self.expire(record)

    def touch(self, record: StreamRecord) -> None:
        """A poll counts as a reader visiting: restart the idle clock."""
        if record.readers == 0:
            record.idle_since = self.clock()

    def cancel(self, record: StreamRecord, reason: str = "cancelled by client") -> bool:
        if not record.cancel(self.clock(), reason):
            return False
        self.totals["cancelled"] += 1
        if self.shared is not None and self.shared.is_mirror(record):
            self.shared.request_cancel(record)  # its owner stops the upstream request
        else:
            self._stop_generation(record)
        return True

    # --- what a shared store asks of the owner of a stream
    def remote_cancel(self, stream_id: str) -> None:
        record = self.store.get(stream_id)
        if record is not None:
            self.cancel(record, "cancelled by client (through another worker)")

    def remote_touch(self, stream_id: str) -> None:
        """Another worker has a reader of this stream: it is not abandoned."""
        record = self.store.get(stream_id)
        if record is not None and record.readers == 0:
            record.idle_since = self.clock()

    def store_failed(self, record: StreamRecord) -> None:
        self._stop_generation(record)

    def expire(self, record: StreamRecord) -> None:
        if record.cancel(
            self.clock(), "no reader within the resume grace period", "stream_expired"
        ):
            self.totals["abandoned"] += 1
            self._stop_generation(record)

    def _stop_generation(self, record: StreamRecord) -> None:
        task = self._generations.get(record.stream_id)
        if task is not None:
            task.cancel()

    async def _generate(self, record: StreamRecord, body: dict[str, Any]) -> None:
        def on_event(event: UpstreamEvent) -> None:
            # Called as the provider's bytes arrive (upstream.stream_chat): no await here.
            if record.terminal:
                return  # cancelled or shut down; the task is being stopped
            if isinstance(event, UpstreamToken):
                record.add_token(event.content)
            elif isinstance(event, UpstreamToolCall):
                record.add_tool_call(event.call_index, event.call_id, event.name, event.arguments)
            elif isinstance(event, UpstreamFinish):
                record.finish(self.clock(), event.finish_reason, event.usage)

        shared = self.shared
        handler = on_event
        if shared is not None:

            def on_shared_event(event: UpstreamEvent) -> None:
                if record.terminal:
                    return
                added: BufferedEvent
                if isinstance(event, UpstreamToken):
                    added = record.add_token(event.content)
                elif isinstance(event, UpstreamToolCall):
                    added = record.add_tool_call(
                        event.call_index, event.call_id, event.name, event.arguments
                    )
                else:
                    record.finish(self.clock(), event.finish_reason, event.usage)
                    return
                shared.appended(record, added)

            handler = on_shared_event

        try:
            if shared is not None and not await shared.claim(record):
                record.fail(
                    self.clock(),
                    "duplicate_chat",
                    "another worker is already generating this chat; send it again to follow it",
                    True,
                )
                return
            await self.upstream.stream_chat(body, handler)
        except UpstreamError as exc:
            record.fail(self.clock(), exc.code, exc.message, exc.retryable)
        except asyncio.CancelledError:
            record.cancel(self.clock())
            raise
        except Exception as exc:
            # A bug must still end the stream: readers never hang.
            logger.exception("generation %s failed", record.stream_id)
            record.fail(self.clock(), "internal_error", f"internal error: {exc}", True)
        finally:
            if not record.terminal:
                record.fail(self.clock(), "upstream_error", "upstream ended early", True)
            if shared is not None:
                shared.ended(record)

    # --- expiry
    def track(self, record: StreamRecord) -> None:
        """Put a stream the store holds under the reaper's watch (``create_stream`` does)."""
        self._unsettled[record.stream_id] = record
        self._held_per_session[record.session_id] += 1

    def reap(self, now: float) -> None:
        for record in list(self._unsettled.values()):
            if (
                not record.terminal
                and record.readers == 0
                and record.idle_since is not None
                and now - record.idle_since >= record.idle_limit_s
            ):
                self.expire(record)
            if record.terminal:
                del self._unsettled[record.stream_id]
                self._ended.append(record)
        # Noticed within one pass of ending, so the deque is in end order give or take a pass.
        ended, retention, busy = self._ended, self.settings.stream_retention_s, []
        while ended:
            record = ended[0]
            if now - (record.ended_at if record.ended_at is not None else now) < retention:
                break
            ended.popleft()
            if record.readers > 0:
                busy.append(record)  # being replayed: it stays until its readers leave
                continue
            self.store.remove(record.stream_id)
            self._held_per_session[record.session_id] -= 1
            if self._held_per_session[record.session_id] <= 0:
                del self._held_per_session[record.session_id]
        ended.extendleft(reversed(busy))
        keep_s = max(self.settings.stream_retention_s, self.settings.resume_grace_s)
        for session in self.store.sessions():
            if (
                session.connections == 0
                and session.session_id not in self._held_per_session
                and now - session.last_seen >= keep_s
            ):
                self.store.remove_session(session.session_id)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            self.reap(self.clock())

    # --- shutdown and stats
    async def shutdown(self) -> None:
        """End every live stream with a retryable error, then close sockets with 1001."""
        self.shutting_down = True
        now = self.clock()
        for record in self.store.streams():
            if record.fail(now, "server_shutdown", "server is shutting down; retry", True):
                self._stop_generation(record)
        connections = [self.spawn(c.shutdown(), "shutdown") for c in list(self.connections)]
        if connections:
            await asyncio.wait(connections, timeout=self.settings.shutdown_grace_s)
        # SSE and blocking readers end on their own once their stream is terminal.
        deadline = self.clock() + self.settings.shutdown_grace_s
        # A short poll: these counters have no event of their own, and this runs once.
        while (self.sse_readers or self.blocking_waiters) and self.clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    @property
    def active_generations(self) -> int:
        return len(self._generations)

    def stats(self) -> dict[str, Any]:
        streams = self.store.streams()
        return {
            # Which worker answered (several share a port with --workers).
            "pid": os.getpid(),
            "store": "memory" if self.shared is None else "redis",
            "connections": len(self.connections),
            "sessions": len(self.store.sessions()),
            "streams": len(streams),
            "live_streams": sum(1 for r in streams if not r.terminal),
            "readers": sum(r.readers for r in streams),
            "active_generations": len(self._generations),
            # Tasks this server started (generations, sockets' helpers, reaper): idle value 1.
            "tasks": len(self._tasks),
            "event_loop_tasks": len(asyncio.all_tasks()),
            "upstream_connections": self.upstream.in_flight,
            "send_queue_bytes": sum(c.queue_bytes for c in self.connections),
            "send_queue_messages": sum(c.queue_messages() for c in self.connections),
            "sse_readers": self.sse_readers,
            "blocking_waiters": self.blocking_waiters,
            "shutting_down": self.shutting_down,
            "totals": {
                **self.totals,
                "upstream_requests": self.upstream.requests_total,
                "upstream_retries": self.upstream.retries_total,
            },
        }

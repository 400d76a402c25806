"""The shared stream store: streams and sessions in Redis, so several workers serve one stream.

Each worker keeps the streams it touches in its own memory (it *is* an
:class:`~reference_server.streams.InMemoryStreamStore`, so the session rules and the transports
read it synchronously, as they do the one-process store) and shares them through Redis:

- the worker that generates a stream (its *owner*) claims the chat's idempotency key with
  ``SET NX`` first, so a chat is generated once whatever worker its resend reaches, and holds
  an ownership lease (``PX``, renewed every second) while it generates;
- every token goes to the stream's Redis Stream, entry id ``0-(index+1)``, so "read after an
  index" is an ``XREAD`` from ``0-(after+1)``; the outcome is the last entry. Writes leave
  through one pipelined writer task: a token costs an append to a list on the hot path;
- another worker asked for that stream (a resume, a resend, an HTTP read or cancel) *mirrors*
  it: a local record fed by an ``XREAD BLOCK`` follower, read by its transports as any other;
- a cancel on a mirror is published on a control channel; the owner cancels its generation
  (its upstream request closes) and writes the outcome, which the mirrors then read. Mirrors
  with readers publish a ``touch`` every second, so the owner does not think them abandoned.

Redis failing (unreachable, restarted) fails the streams it carries with the retryable
``store_unavailable`` error: readers never wait on a store that will not answer, and the next
chat tries Redis again. An owner that dies (its lease expires) fails its stream's mirrors with
the retryable ``owner_lost``.

Bounds: a stream keeps at most ``max_events`` entries (``MAXLEN``); keys of a live stream
expire ``live_ttl_s`` after its last write, a finished stream's ``retention_s`` after its end,
sessions and their resume tokens ``session_ttl_s`` after their last refresh. Redis exceptions
end here: callers see outcomes, never ``redis`` errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reference_server.state import StreamState
from reference_server.streams import (
    InMemoryStreamStore,
    Outcome,
    Session,
    StoreOwner,
    StreamRecord,
    TokenEvent,
    ToolCallEvent,
)

__all__ = ["OWNER_LOST", "STORE_UNAVAILABLE", "RedisStreamStore"]

logger = logging.getLogger(__name__)

STORE_UNAVAILABLE = "store_unavailable"
OWNER_LOST = "owner_lost"
_UNAVAILABLE_MESSAGE = "the shared stream store (Redis) is unreachable; retry the chat"
_HOUSEKEEPING_S = 1.0
_CLOSE_WAIT_S = 2.0
_TOMBSTONE_TTL_S = 3600
_DELETE_IF_EQUAL = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
# A mirror nobody reads for this long stops following (the next reader mirrors it again).
_MIRROR_IDLE_S = 5.0


def _entry_id(index: int) -> str:
    return f"0-{index + 1}"


def _outcome_fields(outcome: Outcome) -> dict[str, str]:
    data = {
        "state": outcome.state.value,
        "finish_reason": outcome.finish_reason,
        "usage": outcome.usage,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "retryable": outcome.retryable,
    }
    return {"k": "o", "o": json.dumps(data)}


class RedisStreamStore(InMemoryStreamStore):
    """:class:`InMemoryStreamStore` for this worker's view, Redis for what workers share."""

    def __init__(
        self,
        url: str,
        *,
        session_ttl_s: float,
        live_ttl_s: float,
        retention_s: float,
        lease_s: float = 5.0,
        max_events: int = 100_000,
        prefix: str = "sh:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.url = url
        self.worker_id = secrets.token_hex(6)
        self.session_ttl_ms = max(1, int(session_ttl_s * 1000))
        self.live_ttl_ms = max(1, int(live_ttl_s * 1000))
        self.retention_ms = max(1, int(retention_s * 1000))
        self.lease_ms = max(1, int(lease_s * 1000))
        self.max_events = max_events
        self.prefix = prefix
        self.clock = clock
        # Short timeouts: a store that does not answer must turn into an error, not a hang.
        # Any: redis-py types every reply as a union of everything; replies are read as strings
        # (decode_responses) in the few places below.
        self.redis: Any = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=3.0, socket_connect_timeout=2.0
        )
        self._owner: StoreOwner | None = None
        self._owned: dict[str, StreamRecord] = {}  # live streams this worker generates
        self._mirrors: dict[str, asyncio.Task[None]] = {}
        self._mirror_idle: dict[str, float] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()

    # --- keys
    def _k(self, kind: str, *parts: str) -> str:
        return self.prefix + kind + ":" + ":".join(parts)

    @property
    def control_channel(self) -> str:
        return self.prefix + "ctl"

    # --- lifecycle
    async def start(self, owner: StoreOwner) -> None:
        """Start the writer, the control listener and housekeeping (the app's lifespan)."""
        self._owner = owner
        loop = asyncio.get_running_loop()
        for coro, name in (
            (self._write_loop(), "redis-writer"),
            (self._listen_loop(), "redis-control"),
            (self._housekeeping_loop(), "redis-housekeeping"),
        ):
            self._tasks.append(loop.create_task(coro, name=name))
        # A cancel published before we listen would be lost; wait briefly for the subscription.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 3.0)

    async def close(self) -> None:
        await self._flush()
        tasks = self._tasks + list(self._mirrors.values())
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in the client's own clean-up must not hold up a shutdown.
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_WAIT_S)
            if stuck:
                logger.warning("redis store: %d task(s) still closing; not waiting", len(stuck))
        self._mirrors.clear()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
            # Connections of cancelled commands (a blocking XREAD) too, not only idle ones.
            await self.redis.connection_pool.disconnect(inuse_connections=True)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    # --- sessions (the StreamStore interface, written through)
    def add_session(self, session: Session) -> None:
        super().add_session(session)
        self._pending.append(("session", session))
        self._wake.set()

    # --- streams
    def remove(self, stream_id: str) -> None:
        record = self.get(stream_id)
        super().remove(stream_id)
        if record is not None and stream_id not in self._mirrors:
            self._pending.append(("gone", record))
            self._wake.set()

    def is_mirror(self, record: StreamRecord) -> bool:
        """Whether another worker generates this stream (this one only follows it)."""
        return record.stream_id in self._mirror_idle

    async def claim(self, record: StreamRecord) -> bool:
        """Make this worker the stream's owner in Redis; False when the store refuses.

        False with the record still live: another worker already generates this chat (the
        record then fails with a retryable error; a resend follows the other one). Redis
        unreachable fails the record with ``store_unavailable``."""
        chat_key = self._k("c", record.session_id, record.chat_id)
        try:
            won = await self.redis.set(chat_key, record.stream_id, nx=True, px=self.live_ttl_ms)
            if not won:
                # The resend that comes next must find the other worker's stream, not this one.
                key = (record.session_id, record.chat_id)
                if self._by_key.get(key) == record.stream_id:
                    del self._by_key[key]
                return False
            async with self.redis.pipeline(transaction=False) as pipe:
                meta = self._k("m", record.stream_id)
                pipe.hset(
                    meta,
                    mapping={
                        "chat_id": record.chat_id,
                        "session_id": record.session_id,
                        "resume_token": record.resume_token,
                        "idle_limit_s": repr(record.idle_limit_s),
                        "owner": self.worker_id,
                    },
                )
                pipe.pexpire(meta, self.live_ttl_ms)
                pipe.set(self._k("l", record.stream_id), self.worker_id, px=self.lease_ms)
                await pipe.execute()
        except (RedisError, OSError):
            record.fail(self.clock(), STORE_UNAVAILABLE, _UNAVAILABLE_MESSAGE, True)
            return False
        self._owned[record.stream_id] = record
        return True

    def appended(self, record: StreamRecord, event: TokenEvent | ToolCallEvent) -> None:
        """Queue one event of an owned stream for Redis (the per-token path: no await)."""
        self._pending.append(("event", record.stream_id, event))
        if not self._wake.is_set():
            self._wake.set()

    def ended(self, record: StreamRecord) -> None:
        """An owned stream reached its outcome: write it, then its keys keep ``retention``."""
        if self._owned.pop(record.stream_id, None) is None or record.outcome is None:
            return
        self._pending.append(("end", record))
        self._wake.set()

    def request_cancel(self, record: StreamRecord) -> None:
        """Cancel a mirrored stream at its owner (who stops the upstream request)."""
        self._pending.append(("publish", f"cancel {record.stream_id}"))
        self._wake.set()

    # --- the writer: every queued write, pipelined in order
    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def flush(self) -> None:
        """Write what is queued now (a session before its ``hello`` names it to a client)."""
        await self._flush()

    async def _flush(self) -> None:
        # One batch at a time: a batch still in flight (the write loop's) must not land after
        # a later one (an explicit flush), or a token's live TTL would undo the end's retention.
        async with self._flush_lock:
            await self._flush_batch()

    async def _flush_batch(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        touched: set[str] = set()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in batch:
                    self._queue_write(pipe, item, touched)
                for stream_id in touched:
                    pipe.pexpire(self._k("e", stream_id), self.live_ttl_ms)
                # Per-command errors (an entry id already taken) are not the store failing.
                await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            logger.warning("redis store: write failed (%s); failing the streams it carries", exc)
            self._store_lost()

    def _queue_write(self, pipe: Any, item: tuple[Any, ...], touched: set[str]) -> None:
        kind = item[0]
        if kind == "event":
            _, stream_id, event = item
            key = self._k("e", stream_id)
            if isinstance(event, TokenEvent):
                fields = {"k": "t", "c": event.content}
            else:
                fields = {
                    "k": "x",
                    "ci": str(event.call_index),
                    "id": event.call_id or "",
                    "n": event.name or "",
                    "a": event.arguments,
                }
            pipe.xadd(
                key, fields, id=_entry_id(event.index), maxlen=self.max_events, approximate=False
            )
            touched.add(stream_id)
        elif kind == "end":
            record: StreamRecord = item[1]
            assert record.outcome is not None
            sid = record.stream_id
            pipe.xadd(self._k("e", sid), _outcome_fields(record.outcome), id="0-*")
            for key in (self._k("e", sid), self._k("m", sid)):
                pipe.pexpire(key, self.retention_ms)
            touched.discard(sid)  # its last tokens in this batch keep the retention TTL
            pipe.pexpire(self._k("c", record.session_id, record.chat_id), self.retention_ms)
            pipe.delete(self._k("l", sid))
        elif kind == "session":
            session: Session = item[1]
            key = self._k("s", session.session_id)
            pipe.hset(key, mapping={"client_id": session.client_id, "rt": session.resume_token})
            pipe.pexpire(key, self.session_ttl_ms)
            pipe.set(self._k("t", session.resume_token), session.session_id, px=self.session_ttl_ms)
        elif kind == "gone":
            gone: StreamRecord = item[1]
            sid = gone.stream_id
            pipe.delete(self._k("m", sid), self._k("e", sid))
            chat_key = self._k("c", gone.session_id, gone.chat_id)
            # Only if it still names this stream (a chat may have been sent again since).
            pipe.eval(_DELETE_IF_EQUAL, 1, chat_key, sid)
            pipe.set(self._k("g", sid), "1", ex=_TOMBSTONE_TTL_S)
        elif kind == "free":
            pipe.eval(_DELETE_IF_EQUAL, 1, self._k("c", item[1], item[2]), item[3])
        elif kind == "publish":
            pipe.publish(self.control_channel, item[1])

    def _store_lost(self) -> None:
        """Redis failed under us: every stream it carries ends with a retryable error."""
        now = self.clock()
        for record in list(self._owned.values()):
            failed = record.fail(now, STORE_UNAVAILABLE, _UNAVAILABLE_MESSAGE, True)
            if failed and self._owner is not None:
                self._owner.store_failed(record)
        self._owned.clear()

    # --- control channel: cancels and touches for streams this worker owns
    async def _listen_loop(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.control_channel)
                self._listening.set()
                async for message in pubsub.listen():
                    self._on_control(str(message.get("data", "")))
            except (RedisError, OSError) as exc:
                logger.warning("redis store: control channel lost (%s); reconnecting", exc)
                self._store_lost()
            finally:
                # Bounded: the pub/sub connection's close can wait on the cancelled listen.
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(_CLOSE_WAIT_S):
                        await pubsub.aclose()
            await asyncio.sleep(_HOUSEKEEPING_S)

    def _on_control(self, data: str) -> None:
        verb, _, stream_id = data.partition(" ")
        if self._owner is None or stream_id not in self._owned:
            return
        if verb == "cancel":
            self._owner.remote_cancel(stream_id)
        elif verb == "touch":
            self._owner.remote_touch(stream_id)

    # --- housekeeping: leases, session TTLs, touches for read mirrors, idle mirrors dropped
    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                await self.housekeeping()
            except (RedisError, OSError) as exc:
                logger.warning("redis store: housekeeping failed (%s)", exc)
                self._store_lost()

    async def housekeeping(self) -> None:
        async with self._flush_lock:  # a lease renewal must not land after a stream's end
            await self._housekeeping_batch()

    async def _housekeeping_batch(self) -> None:
        now = self.clock()
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, owned in self._owned.items():
                pipe.set(self._k("l", stream_id), self.worker_id, px=self.lease_ms)
                for key in (
                    self._k("m", stream_id),
                    self._k("e", stream_id),
                    self._k("c", owned.session_id, owned.chat_id),
                ):
                    pipe.pexpire(key, self.live_ttl_ms)
            for session in self.sessions():
                if session.connections > 0:
                    pipe.pexpire(self._k("s", session.session_id), self.session_ttl_ms)
                    pipe.pexpire(self._k("t", session.resume_token), self.session_ttl_ms)
            for stream_id in list(self._mirror_idle):
                record = self.get(stream_id)
                if record is None:
                    self._mirror_idle.pop(stream_id, None)
                    continue
                if record.readers > 0:
                    self._mirror_idle[stream_id] = now
                    if not record.terminal:
                        pipe.publish(self.control_channel, f"touch {stream_id}")
                elif now - self._mirror_idle[stream_id] >= _MIRROR_IDLE_S:
                    self._drop_mirror(stream_id)
            await pipe.execute(raise_on_error=False)

    def _drop_mirror(self, stream_id: str) -> None:
        # Forgotten here, not tombstoned: the stream still lives in Redis.
        self._mirror_idle.pop(stream_id, None)
        task = self._mirrors.pop(stream_id, None)
        if task is not None:
            task.cancel()
        record = self._streams.pop(stream_id, None)
        if record is not None:
            key = (record.session_id, record.chat_id)
            if self._by_key.get(key) == stream_id:
                del self._by_key[key]

    # --- loading what another worker wrote (before the session rules read the store)
    async def load_session(self, session_id: str) -> Session | None:
        found = self.get_session(session_id)
        if found is not None:
            return found
        try:
            data = await self.redis.hgetall(self._k("s", session_id))
        except (RedisError, OSError):
            return None
        if not data:
            return None
        session = Session(session_id, data["client_id"], data["rt"], last_seen=self.clock())
        InMemoryStreamStore.add_session(self, session)  # known to Redis already
        return session

    async def load_session_by_token(self, resume_token: str) -> Session | None:
        found = self.session_by_token(resume_token)
        if found is not None:
            return found
        try:
            session_id = await self.redis.get(self._k("t", resume_token))
        except (RedisError, OSError):
            return None
        return None if session_id is None else await self.load_session(session_id)

    async def load_chat(self, session_id: str, chat_id: str) -> StreamRecord | None:
        found = self.find(session_id, chat_id)
        if found is not None:
            return found
        try:
            stream_id = await self.redis.get(self._k("c", session_id, chat_id))
        except (RedisError, OSError):
            return None
        return None if stream_id is None else await self.load_stream(stream_id)

    async def load_stream(self, stream_id: str) -> StreamRecord | None:
        found = self.get(stream_id)
        if found is not None:
            if stream_id in self._mirror_idle:
                self._mirror_idle[stream_id] = self.clock()
            return found
        try:
            meta, gone = await asyncio.gather(
                self.redis.hgetall(self._k("m", stream_id)),
                self.redis.exists(self._k("g", stream_id)),
            )
        except (RedisError, OSError):
            return None
        if not meta:
            if gone:
                self._tombstones[stream_id] = None
            return None
        await self.load_session(meta["session_id"])
        if self.get(stream_id) is not None:  # another load got there while we waited
            return self.get(stream_id)
        now = self.clock()
        record = StreamRecord(
            stream_id=stream_id,
            chat_id=meta["chat_id"],
            session_id=meta["session_id"],
            resume_token=meta["resume_token"],
            created_at=now,
            idle_limit_s=float(meta["idle_limit_s"]),
            idle_since=now,
        )
        InMemoryStreamStore.add(self, record)
        self._mirror_idle[stream_id] = now
        self._mirrors[stream_id] = asyncio.get_running_loop().create_task(
            self._follow_remote(record), name=f"redis-mirror-{stream_id}"
        )
        # Its owner hears of a reader now, not a second later.
        self._pending.append(("publish", f"touch {stream_id}"))
        self._wake.set()
        return record

    async def _follow_remote(self, record: StreamRecord) -> None:
        key, lease = self._k("e", record.stream_id), self._k("l", record.stream_id)
        last = "0-0"
        try:
            while record.outcome is None:
                try:
                    reply = await self.redis.xread({key: last}, count=1000, block=1000)
                    if not reply and record.outcome is None and not await self.redis.exists(lease):
                        # One more read: the owner may have written its end, then left.
                        reply = await self.redis.xread({key: last}, count=1000)
                        if not reply:
                            self._owner_lost(record)
                            return
                except (RedisError, OSError):
                    record.fail(self.clock(), STORE_UNAVAILABLE, _UNAVAILABLE_MESSAGE, True)
                    return
                for _, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id
                        if record.terminal:
                            break
                        self._apply(record, fields)
        finally:
            if self._mirrors.get(record.stream_id) is asyncio.current_task():
                del self._mirrors[record.stream_id]

    def _apply(self, record: StreamRecord, fields: dict[str, str]) -> None:
        kind = fields.get("k")
        if kind == "t":
            record.add_token(fields["c"])
        elif kind == "x":
            record.add_tool_call(
                int(fields["ci"]), fields["id"] or None, fields["n"] or None, fields["a"]
            )
        elif kind == "o":
            data = json.loads(fields["o"])
            now = self.clock()
            state = StreamState(data["state"])
            if state is StreamState.ENDED:
                record.finish(now, data["finish_reason"], data["usage"])
            elif state is StreamState.CANCELLED:
                record.cancel(now, data["error_message"] or "cancelled", data["error_code"])
            else:
                record.fail(
                    now, data["error_code"], data["error_message"] or "", bool(data["retryable"])
                )

    def _owner_lost(self, record: StreamRecord) -> None:
        message = "the worker generating this stream stopped; send the chat again"
        record.fail(self.clock(), OWNER_LOST, message, True)
        key = (record.session_id, record.chat_id)
        if self._by_key.get(key) == record.stream_id:
            del self._by_key[key]
        # The dead stream must not answer the chat's resend: free its idempotency key.
        self._pending.append(("end", record))
        self._pending.append(("free", record.session_id, record.chat_id, record.stream_id))
        self._wake.set()

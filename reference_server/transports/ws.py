"""The WebSocket endpoint ``/ws/chat/{client_id}``: protocol v1 and the tutorial shape.

One :class:`WSConnection` per socket runs four kinds of task:

- the receive loop (this is where bad input is answered and limits are enforced),
- one sender that writes what is queued, fed by a bounded queue (a slow reader blocks the
  producers, never grows memory; a frame that cannot be written in ``send_timeout_s`` closes
  the socket: one watchdog timer per connection checks that, not a timer per frame); a
  forwarder whose frame finds the sender idle writes it itself (``_enqueue(direct=True)``),
- one forwarder per subscribed stream, following the stream's record from an index,
- the app-level heartbeat (v1 only; WebSocket ping frames come from uvicorn).

Every exit path runs ``_cleanup``: the tasks are cancelled and awaited, readers detach from their
streams (which then keep generating for the resume grace period, or stop at once without one).
Sends may fail with ``WebSocketDisconnect`` or a plain ``RuntimeError`` depending on uvicorn's
WebSocket backend; both mean the peer is gone (DESIGN.md section 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from reference_server.errors import ProtocolError
from reference_server.limits import TokenBucket, check_auth, check_origin
from reference_server.manager import StreamManager, build_upstream_body
from reference_server.protocol import (
    PROTOCOL_V1,
    Cancelled,
    CancelRequest,
    ChatRequest,
    End,
    Error,
    Hello,
    Limits,
    Ping,
    PingRequest,
    Pong,
    PongRequest,
    ResumeRequest,
    ServerMessage,
    Start,
    ToolCall,
    encode,
    parse_client_message,
    parse_tutorial_message,
    token_frame,
    token_frame_prefix,
    tutorial_end,
    tutorial_error,
    tutorial_token,
)
from reference_server.state import StreamState
from reference_server.streams import Outcome, Session, StreamRecord, TokenEvent, ToolCallEvent

__all__ = ["WSConnection", "websocket_endpoint"]

logger = logging.getLogger(__name__)

_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


@dataclass(frozen=True)
class _CloseRequest:
    code: int
    reason: str


@dataclass
class _Subscription:
    record: StreamRecord
    task: asyncio.Task[None]


async def websocket_endpoint(websocket: WebSocket, client_id: str) -> None:
    manager: StreamManager = websocket.app.state.manager
    settings = manager.settings
    mode: Literal["v1", "tutorial"] = (
        "v1" if PROTOCOL_V1 in websocket.scope.get("subprotocols", []) else "tutorial"
    )
    refusal = check_origin(
        websocket.headers.get("origin"), settings.allowed_origins, settings.allow_missing_origin
    ) or check_auth(
        settings.auth_token.get_secret_value() if settings.auth_token else None,
        websocket.headers,
        websocket.query_params,
    )
    subprotocol = PROTOCOL_V1 if mode == "v1" else None
    if refusal is not None or manager.shutting_down:
        # Accept, then close with a code: a refused handshake (HTTP 403) tells the client less.
        await websocket.accept(subprotocol=subprotocol)
        code, reason = (1001, "server shutting down") if refusal is None else (1008, refusal)
        with contextlib.suppress(*_SEND_ERRORS):
            await websocket.close(code, reason)
        return
    await websocket.accept(subprotocol=subprotocol)
    connection = WSConnection(websocket, manager, client_id, mode)
    await connection.run()


class WSConnection:
    def __init__(
        self,
        websocket: WebSocket,
        manager: StreamManager,
        client_id: str,
        mode: Literal["v1", "tutorial"],
    ) -> None:
        self.ws = websocket
        self.manager = manager
        self.settings = manager.settings
        self.client_id = client_id
        self.mode = mode
        self.queue: asyncio.Queue[str | _CloseRequest] = asyncio.Queue(
            self.settings.send_queue_max_messages
        )
        self.queue_bytes = 0
        self.subscriptions: dict[str, _Subscription] = {}
        now = manager.clock()
        self.bucket = TokenBucket(
            self.settings.messages_per_second, self.settings.message_burst, now
        )
        self.last_heard = now
        self.session: Session | None = None
        # Futures, not Events and a task waiting on one: an idle socket costs memory for every
        # object it holds (docs/reference_server.md, "Memory per idle connection").
        self._loop = asyncio.get_running_loop()
        self._closing: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._close: _CloseRequest | None = None
        self._close_sent = False
        self._helpers: list[asyncio.Task[Any]] = []
        # Send watchdog: when the frame being written started (None = not writing), and the
        # one timer that checks it (armed while frames are being written).
        self._send_started: float | None = None
        self._writes = 0  # frames being written right now (sender and producers)
        self._watchdog: asyncio.TimerHandle | None = None
        # Tutorial mode: one stream at a time, in arrival order, like the tutorial's server.
        self._tutorial_jobs: asyncio.Queue[dict[str, Any]] | None = None
        self._tutorial_idle: asyncio.Event | None = None
        if mode == "tutorial":
            self._tutorial_jobs = asyncio.Queue(16)
            self._tutorial_idle = asyncio.Event()
            self._tutorial_idle.set()

    def queue_messages(self) -> int:
        return self.queue.qsize()

    # --- lifecycle
    async def run(self) -> None:
        manager = self.manager
        manager.connections.add(self)
        manager.totals["ws_connections"] += 1
        try:
            if self.mode == "v1":
                self.session = manager.new_session(self.client_id)
                self.session.connections += 1
                await self._enqueue(self._hello(self.session))
            sender = manager.spawn(self._send_loop(), "ws-send")
            receiver = manager.spawn(self._receive_loop(), "ws-receive")
            self._helpers += [sender, receiver]
            if self.mode == "v1":
                self._helpers.append(manager.spawn(self._heartbeat_loop(), "ws-heartbeat"))
            else:
                self._helpers.append(manager.spawn(self._tutorial_worker(), "ws-tutorial"))
            await asyncio.wait(
                {sender, receiver, self._closing}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        tasks = self._helpers + [sub.task for sub in self.subscriptions.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.subscriptions.clear()
        if self._close is not None and not self._close_sent:
            self._close_sent = True
            with contextlib.suppress(*_SEND_ERRORS, TimeoutError):
                await asyncio.wait_for(self.ws.close(self._close.code, self._close.reason), 1.0)
        if self.session is not None:
            self.session.connections -= 1
            self.session.last_seen = self.manager.clock()
        self.queue_bytes = 0
        self.manager.connections.discard(self)
        if not self._closed.done():
            self._closed.set_result(None)

    def _close_now(self, code: int, reason: str) -> None:
        """Close without flushing the queue (dead or misbehaving peer)."""
        if self._close is None:
            self._close = _CloseRequest(code, reason)
        if not self._closing.done():
            self._closing.set_result(None)

    async def shutdown(self) -> None:
        """Server shutdown: let forwarders deliver their ``server_shutdown`` errors, then 1001."""
        forwarders = [sub.task for sub in self.subscriptions.values()]
        if forwarders:
            await asyncio.wait(forwarders, timeout=self.settings.shutdown_grace_s)
        if self._tutorial_idle is not None:
            # The running stream already failed with server_shutdown: let its error out first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tutorial_idle.wait(), self.settings.shutdown_grace_s)
        try:
            self.queue.put_nowait(_CloseRequest(1001, "server shutting down"))
        except asyncio.QueueFull:
            self._close_now(1001, "server shutting down")
        # Wait for the sender to write the close frame (run() ends and cleans up); wait, not
        # wait_for, which would cancel the future on a timeout.
        await asyncio.wait({self._closed}, timeout=self.settings.shutdown_grace_s)

    # --- sending
    async def _enqueue(self, text: str, *, direct: bool = False) -> None:
        """Queue a frame for the sender; ``direct``: write it now if the sender is idle.

        Direct: nothing queued and nothing being written means the sender is parked, so a
        stream's frame is written from its forwarder. It then reaches the socket in the
        forwarder's own turn of the event loop instead of one more wake-up of the sender, which
        under load is one more wait behind every other ready task. Order holds (frames queued
        earlier go first). Only forwarders write directly: a write to a peer that stopped
        reading blocks its writer, and the receive loop must stay free to take a ``cancel``.
        """
        if direct and self._writes == 0 and self._close is None and self.queue.empty():
            if not await self._write(text):
                self._peer_gone()
            return
        self.queue_bytes += len(text)
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            await self.queue.put(text)  # a slow reader: the producer waits here

    async def _write(self, text: str) -> bool:
        """Write one frame; False when the peer is gone.

        Not wait_for per frame (a task, a timer and two loop turns for every token): the
        watchdog closes the socket if a write is still pending after send_timeout_s. Writes in
        flight are counted (the sender's and a producer's can both wait for a paused
        transport); the watchdog times the oldest.
        """
        if self._writes == 0:
            self._send_started = self._loop.time()
            if self._watchdog is None:
                self._arm_watchdog(self._send_started)
        self._writes += 1
        try:
            await self.ws.send({"type": "websocket.send", "text": text})
            return True
        except _SEND_ERRORS:
            return False
        finally:
            self._writes -= 1
            if self._writes == 0:
                self._send_started = None

    def _peer_gone(self) -> None:
        # run() wakes and cleans up; the receive loop sees the disconnect too.
        if not self._closing.done():
            self._closing.set_result(None)

    async def _send_message(self, message: ServerMessage) -> None:
        await self._enqueue(encode(message))

    async def _send_error(
        self,
        code: str,
        message: str,
        *,
        msg_id: str | None = None,
        stream_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        if self.mode == "tutorial":
            await self._enqueue(tutorial_error(f"{code}: {message}"))
            return
        error = Error(
            id=msg_id, stream_id=stream_id, code=code, message=message, retryable=retryable
        )
        await self._send_message(error)

    async def _send_loop(self) -> None:
        queue = self.queue
        while True:
            item = await queue.get()
            # Then everything already queued without going back to the event loop in between.
            while True:
                if isinstance(item, _CloseRequest):
                    self._close = item
                    self._close_sent = True
                    with contextlib.suppress(*_SEND_ERRORS, TimeoutError):
                        await asyncio.wait_for(self.ws.close(item.code, item.reason), 1.0)
                    return
                self.queue_bytes -= len(item)
                if not await self._write(item):
                    return  # the peer is gone; the receive loop sees the disconnect too
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    def _arm_watchdog(self, started: float) -> None:
        self._watchdog = self._loop.call_at(
            started + self.settings.send_timeout_s, self._check_send
        )

    def _check_send(self) -> None:
        self._watchdog = None
        started = self._send_started
        if started is None:
            return  # idle: the next send arms it again
        if self._loop.time() - started >= self.settings.send_timeout_s:
            self._close_now(1008, "send timeout: the client is not reading")
        else:
            self._arm_watchdog(started)  # a later frame: its own deadline

    # --- receiving
    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except _SEND_ERRORS:
                return
            if message["type"] == "websocket.disconnect":
                return
            now = self.manager.clock()
            self.last_heard = now
            if not self.bucket.allow(now):
                limit = self.settings.messages_per_second
                await self._send_error(
                    "rate_limited",
                    f"more than {limit:g} messages per second; message dropped",
                    retryable=True,
                )
                continue
            text = message.get("text")
            if text is None:
                await self._send_error(
                    "binary_not_supported", "binary frames are not supported; send JSON text"
                )
                continue
            if self.mode == "v1":
                await self._handle_v1(text)
            else:
                await self._handle_tutorial(text)

    async def _handle_v1(self, text: str) -> None:
        try:
            message = parse_client_message(text)
        except ProtocolError as exc:
            await self._send_error(exc.code, exc.message, msg_id=exc.msg_id)
            return
        if isinstance(message, ChatRequest):
            await self._on_chat(message)
        elif isinstance(message, CancelRequest):
            await self._on_cancel(message)
        elif isinstance(message, ResumeRequest):
            await self._on_resume(message)
        elif isinstance(message, PingRequest):
            await self._send_message(Pong(ts=message.ts))
        else:
            assert isinstance(message, PongRequest)  # liveness already recorded

    # --- v1 flows
    def _hello(self, session: Session) -> str:
        s = self.settings
        limits = Limits(
            max_message_bytes=s.max_message_bytes,
            max_streams=s.max_streams_per_connection,
            messages_per_second=s.messages_per_second,
            resume_grace_ms=int(s.resume_grace_s * 1000),
        )
        return encode(
            Hello(
                session_id=session.session_id,
                resume_token=session.resume_token,
                heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
                limits=limits,
            )
        )

    def _live_subscriptions(self) -> int:
        return sum(1 for sub in self.subscriptions.values() if not sub.record.terminal)

    async def _on_chat(self, chat: ChatRequest) -> None:
        assert self.session is not None
        owner = self.session
        if chat.resume_token is not None and chat.resume_token != owner.resume_token:
            proven = self.manager.store.session_by_token(chat.resume_token)
            if proven is None or proven.client_id != self.client_id:
                await self._send_error(
                    "forbidden", "unknown or expired resume_token", msg_id=chat.id
                )
                return
            owner = proven
        existing = self.manager.store.find(owner.session_id, chat.id)
        if existing is None and owner is not self.session:
            existing = self.manager.store.find(self.session.session_id, chat.id)
        if existing is not None:
            # Idempotent resend: never a second generation; replay after ``after``, then live.
            if existing.state is StreamState.CANCELLED and (
                existing.outcome is not None and existing.outcome.error_code == "stream_expired"
            ):
                await self._send_error(
                    "stream_expired",
                    "the stream expired (no reader within the grace period); start a new chat",
                    msg_id=chat.id,
                    stream_id=existing.stream_id,
                )
                return
            await self._subscribe(existing, chat.id, chat.after, replay=True)
            return
        if self.manager.shutting_down:
            await self._send_error(
                "server_shutdown", "server is shutting down", msg_id=chat.id, retryable=True
            )
            return
        if chat.id in self.subscriptions and not self.subscriptions[chat.id].record.terminal:
            # The id belongs to a stream this socket follows from another session.
            await self._send_error(
                "invalid_message", f"id {chat.id!r} is already in use", msg_id=chat.id
            )
            return
        if self._live_subscriptions() >= self.settings.max_streams_per_connection:
            await self._send_error(
                "too_many_streams",
                f"at most {self.settings.max_streams_per_connection} streams per connection",
                msg_id=chat.id,
                retryable=True,
            )
            return
        body = build_upstream_body(
            model=chat.model,
            default_model=self.settings.default_model,
            messages=chat.messages,
            max_tokens=chat.max_tokens,
            temperature=chat.temperature,
            tools=chat.tools,
            tool_choice=chat.tool_choice,
            metadata=chat.metadata,
        )
        record = self.manager.create_stream(
            session_id=self.session.session_id,
            chat_id=chat.id,
            body=body,
            idle_limit_s=self.settings.resume_grace_s,
        )
        await self._subscribe(record, chat.id, -1, replay=False)

    async def _on_cancel(self, cancel: CancelRequest) -> None:
        assert self.session is not None
        sub = self.subscriptions.get(cancel.id)
        record = sub.record if sub is not None else None
        if record is None:
            record = self.manager.store.find(self.session.session_id, cancel.id)
        if record is None or record.terminal:
            state = "unknown" if record is None else f"already {record.state.value}"
            await self._send_error(
                "unknown_stream",
                f"no active stream with id {cancel.id!r} ({state})",
                msg_id=cancel.id,
            )
            return
        self.manager.cancel(record)
        if sub is None:
            # Nobody on this socket follows it: answer here (a follower answers by itself).
            await self._send_message(Cancelled(id=cancel.id, index=-1))

    async def _on_resume(self, resume: ResumeRequest) -> None:
        store = self.manager.store
        record = store.get(resume.stream_id)
        if record is None:
            if store.expired(resume.stream_id):
                await self._send_error(
                    "stream_expired",
                    "the stream is no longer buffered; resend the chat",
                    stream_id=resume.stream_id,
                )
            else:
                await self._send_error(
                    "unknown_stream", "no such stream", stream_id=resume.stream_id
                )
            return
        owner = store.get_session(record.session_id)
        allowed = {record.resume_token} | ({owner.resume_token} if owner else set())
        if resume.resume_token not in allowed:
            await self._send_error(
                "forbidden", "resume_token does not match this stream", stream_id=record.stream_id
            )
            return
        if record.outcome is not None and record.outcome.error_code == "stream_expired":
            await self._send_error(
                "stream_expired",
                "the stream expired (no reader within the grace period); resend the chat",
                msg_id=record.chat_id,
                stream_id=record.stream_id,
            )
            return
        current = self.subscriptions.get(record.chat_id)
        following = current is not None and current.record is record
        limit = self.settings.max_streams_per_connection
        if not following and self._live_subscriptions() >= limit:
            await self._send_error(
                "too_many_streams",
                f"at most {limit} streams per connection",
                msg_id=record.chat_id,
                retryable=True,
            )
            return
        await self._subscribe(record, record.chat_id, resume.after, replay=True)

    async def _subscribe(
        self, record: StreamRecord, chat_id: str, after: int, replay: bool
    ) -> None:
        # Attach before dropping a previous reader, so the stream never looks abandoned.
        self.manager.attach(record)
        previous = self.subscriptions.pop(chat_id, None)
        if previous is not None:
            # A resend on the same socket restarts the replay from the client's ``after``;
            # two forwarders of one stream would duplicate tokens.
            previous.task.cancel()
            await asyncio.gather(previous.task, return_exceptions=True)
        await self._send_message(
            Start(
                id=chat_id,
                stream_id=record.stream_id,
                resume_token=record.resume_token,
                replay=replay,
            )
        )
        task = self.manager.spawn(self._forward(record, chat_id, after), f"ws-forward-{chat_id}")
        self.subscriptions[chat_id] = _Subscription(record, task)

    async def _forward(self, record: StreamRecord, chat_id: str, after: int) -> None:
        last_sent = after
        # Every token frame of this stream starts the same: encoded once, not per token.
        prefix = token_frame_prefix(chat_id)
        try:
            async with contextlib.aclosing(record.follow(after)) as items:
                async for item in items:
                    if isinstance(item, TokenEvent):
                        frame = token_frame(prefix, item.index, item.content)
                        await self._enqueue(frame, direct=True)
                        last_sent = item.index
                    elif isinstance(item, ToolCallEvent):
                        await self._send_message(
                            ToolCall(
                                id=chat_id,
                                index=item.index,
                                call_index=item.call_index,
                                call_id=item.call_id,
                                name=item.name,
                                arguments=item.arguments,
                            )
                        )
                        last_sent = item.index
                    elif isinstance(item, Outcome):
                        await self._send_outcome(record, chat_id, item, last_sent)
        finally:
            self.manager.detach(record)
            sub = self.subscriptions.get(chat_id)
            if sub is not None and sub.record is record and sub.task is asyncio.current_task():
                del self.subscriptions[chat_id]

    async def _send_outcome(
        self, record: StreamRecord, chat_id: str, outcome: Outcome, last_sent: int
    ) -> None:
        if outcome.state is StreamState.ENDED:
            await self._send_message(
                End(
                    id=chat_id,
                    finish_reason=outcome.finish_reason,
                    usage=outcome.usage,
                    tokens=len(record.buffer),
                )
            )
        elif outcome.state is StreamState.CANCELLED and outcome.error_code != "stream_expired":
            await self._send_message(Cancelled(id=chat_id, index=last_sent))
        else:
            await self._send_error(
                outcome.error_code or "upstream_error",
                outcome.error_message or "stream failed",
                msg_id=chat_id,
                stream_id=record.stream_id,
                retryable=outcome.retryable or outcome.error_code == "stream_expired",
            )

    # --- heartbeat
    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_s
        beat = 0
        while True:
            await asyncio.sleep(interval)
            if self.manager.clock() - self.last_heard > self.settings.heartbeat_deadline_s:
                self._close_now(1011, "heartbeat timeout: no message from the client")
                return
            beat += 1
            # A full queue already proves traffic; skipping a ping is harmless.
            with contextlib.suppress(asyncio.QueueFull):
                text = encode(Ping(ts=beat))
                self.queue.put_nowait(text)
                self.queue_bytes += len(text)

    # --- tutorial shape
    async def _handle_tutorial(self, text: str) -> None:
        try:
            request = parse_tutorial_message(text)
        except ProtocolError as exc:
            await self._enqueue(tutorial_error(f"{exc.code}: {exc.message}"))
            return
        body = build_upstream_body(
            model=request.model,
            default_model=self.settings.default_model,
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            metadata=request.metadata,
        )
        assert self._tutorial_jobs is not None
        try:
            self._tutorial_jobs.put_nowait(body)
        except asyncio.QueueFull:
            await self._enqueue(tutorial_error("too_many_streams: too many queued messages"))

    async def _tutorial_worker(self) -> None:
        jobs, idle = self._tutorial_jobs, self._tutorial_idle
        assert jobs is not None and idle is not None
        turn = 0
        while True:
            body = await jobs.get()
            if self.manager.shutting_down:
                await self._enqueue(tutorial_error("server_shutdown: server is shutting down"))
                continue
            turn += 1
            idle.clear()
            # No resume in this shape: a stream without its socket stops at once (grace 0).
            record = self.manager.create_stream(
                session_id=f"tutorial:{id(self)}", chat_id=str(turn), body=body, idle_limit_s=0
            )
            self.manager.attach(record)
            try:
                async with contextlib.aclosing(record.follow(-1)) as items:
                    async for item in items:
                        if isinstance(item, TokenEvent):
                            await self._enqueue(tutorial_token(item.content), direct=True)
                        elif isinstance(item, Outcome):
                            if item.state is StreamState.ENDED:
                                await self._enqueue(tutorial_end())
                            else:
                                message = item.error_message or "stream failed"
                                await self._enqueue(tutorial_error(message))
            finally:
                self.manager.detach(record)
                idle.set()

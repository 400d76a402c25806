"""The WebSocket endpoint ``/ws/chat/{client_id}``: protocol v1 and the tutorial shape.

The last step of a token's way to a WebSocket client: a forwarder reads it from the stream's
record (``streams.py``) and writes its frame. What the protocol means lives in ``session.py``
(:class:`~reference_server.session.SocketSession`: client frames in, decisions out); this module
is the I/O shell that feeds it and carries its decisions out. One :class:`WSConnection` per
socket runs four kinds of task:

- the receive loop (hands each frame to the session, carries out what it decides),
- one sender that writes what is queued, fed by a bounded queue (a slow reader blocks the
  producers, never grows memory; a frame that cannot be written in ``send_timeout_s`` closes
  the socket: one watchdog timer per connection checks that, not a timer per frame); a
  forwarder whose frame finds the sender idle writes it itself (``_enqueue(direct=True)``),
- one forwarder per subscribed stream, following the stream's record from an index,
- the app-level heartbeat (v1 only; WebSocket ping frames come from uvicorn).

Every exit path runs ``_cleanup``: the tasks are cancelled and awaited, readers detach from their
streams (which then keep generating for the resume grace period, or stop at once without one).
Sends may fail with ``WebSocketDisconnect`` or a plain ``RuntimeError`` depending on uvicorn's
WebSocket backend; both mean the peer is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from reference_server.errors import ProtocolError
from reference_server.limits import check_auth, check_origin
from reference_server.manager import StreamManager
from reference_server.protocol import (
    PROTOCOL_V1,
    CancelRequest,
    ChatRequest,
    ResumeRequest,
    ServerMessage,
    Start,
    encode,
    parse_client_message,
    token_frame,
    token_frame_prefix,
    tutorial_end,
    tutorial_error,
    tutorial_token,
)
from reference_server.session import (
    Cancel,
    CloseNow,
    Decision,
    Follow,
    Generate,
    QueueTutorial,
    Send,
    SocketSession,
    outcome_frame,
    tool_call_frame,
)
from reference_server.state import StreamState
from reference_server.streams import (
    Outcome,
    Session,
    StreamRecord,
    StreamStore,
    TokenEvent,
    ToolCallEvent,
)

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


async def _fetch_shared(store: StreamStore, session: Session, text: str) -> None:
    """Bring what this frame names from the shared store into this worker's view, so the
    session rules (which read the store synchronously) find another worker's stream."""
    try:
        message = parse_client_message(text)
    except ProtocolError:
        return  # the session rules answer it
    if isinstance(message, ChatRequest):
        if message.resume_token is not None:
            owner = await store.load_session_by_token(message.resume_token)
            if owner is not None:
                await store.load_chat(owner.session_id, message.id)
        await store.load_chat(session.session_id, message.id)
    elif isinstance(message, ResumeRequest):
        await store.load_stream(message.stream_id)
    elif isinstance(message, CancelRequest):
        await store.load_chat(session.session_id, message.id)


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
        self.mode = mode
        self.queue: asyncio.Queue[str | _CloseRequest] = asyncio.Queue(
            self.settings.send_queue_max_messages
        )
        self.queue_bytes = 0
        self.subscriptions: dict[str, _Subscription] = {}
        # What the client's frames mean; this class only carries its decisions out.
        self.rules = SocketSession(
            self.settings,
            manager.store,
            manager.new_session(client_id) if mode == "v1" else None,
            manager.clock(),
        )
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
            session = self.rules.session
            if session is not None:
                session.connections += 1
                if manager.shared is not None:
                    # Its resume_token must work on every worker once the client has it.
                    await manager.shared.flush()
                await self._enqueue(self.rules.hello())
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
        session = self.rules.session
        if session is not None:
            session.connections -= 1
            session.last_seen = self.manager.clock()
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
            text = message.get("text")
            if self.manager.shared is not None and text is not None and self.rules.session:
                await _fetch_shared(self.manager.store, self.rules.session, text)
            decisions = self.rules.receive(
                text,
                self.manager.clock(),
                following=self.subscriptions,
                shutting_down=self.manager.shutting_down,
            )
            await self._carry_out(decisions)

    async def _carry_out(self, decisions: list[Decision]) -> None:
        """Do what the session decided, in its order."""
        for decision in decisions:
            if isinstance(decision, Send) and decision.droppable:
                with contextlib.suppress(asyncio.QueueFull):
                    self.queue.put_nowait(decision.frame)
                    self.queue_bytes += len(decision.frame)
            elif isinstance(decision, Send):
                await self._enqueue(decision.frame)
            elif isinstance(decision, Follow):
                record = decision.record
                await self._subscribe(record, decision.chat_id, decision.after, replay=True)
            elif isinstance(decision, Generate):
                record = self.manager.create_stream(
                    session_id=decision.session_id,
                    chat_id=decision.chat_id,
                    body=decision.body,
                    idle_limit_s=decision.idle_limit_s,
                )
                await self._subscribe(record, decision.chat_id, -1, replay=False)
            elif isinstance(decision, Cancel):
                self.manager.cancel(decision.record)
            elif isinstance(decision, CloseNow):
                self._close_now(decision.code, decision.reason)
            else:
                await self._queue_tutorial(decision)

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
                        await self._enqueue(tool_call_frame(chat_id, item))
                        last_sent = item.index
                    elif isinstance(item, Outcome):
                        await self._enqueue(outcome_frame(record, chat_id, item, last_sent))
        finally:
            self.manager.detach(record)
            sub = self.subscriptions.get(chat_id)
            if sub is not None and sub.record is record and sub.task is asyncio.current_task():
                del self.subscriptions[chat_id]

    # --- heartbeat
    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            decisions = self.rules.heartbeat(self.manager.clock())
            await self._carry_out(decisions)
            if any(isinstance(decision, CloseNow) for decision in decisions):
                return

    # --- tutorial shape
    async def _queue_tutorial(self, job: QueueTutorial) -> None:
        assert self._tutorial_jobs is not None
        try:
            self._tutorial_jobs.put_nowait(job.body)
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

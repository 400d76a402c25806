"""The rules of one WebSocket session, sans I/O: client frames in, decisions out.

On a token's way: ``upstream.py`` turns the provider's bytes into events, the manager appends
them to a stream's record (``streams.py``), and a socket's forwarder in ``transports/ws.py``
sends them on. This module decides everything around that flow: which streams a socket starts,
follows or cancels, which frames answer a client message (``hello``, ``start`` on a resend,
errors, ``pong``), which frame ends a stream, and when a silent client is closed.
``transports/ws.py`` only carries the decisions out (the send queue, the sender, the tasks).

:class:`SocketSession` holds one socket's protocol state (its v1 :class:`Session`, the message
rate bucket, when the client was last heard) and reads the stream store; it never awaits, sends
or spawns, so every rule is tested without a socket (``tests/reference_server/test_session.py``).
Each call returns the decisions to carry out, in order. The contract is ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reference_server.errors import ProtocolError
from reference_server.limits import TokenBucket
from reference_server.manager import upstream_body_of
from reference_server.protocol import (
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
    ResumeRequest,
    ServerMessage,
    ToolCall,
    encode,
    parse_client_message,
    parse_tutorial_message,
    tutorial_error,
)
from reference_server.settings import Settings
from reference_server.state import StreamState
from reference_server.streams import Outcome, Session, StreamRecord, StreamStore, ToolCallEvent

__all__ = [
    "Cancel",
    "CloseNow",
    "Decision",
    "Follow",
    "Followed",
    "Generate",
    "QueueTutorial",
    "Send",
    "SocketSession",
    "outcome_frame",
    "tool_call_frame",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Queue one text frame for the client.

    ``droppable``: skip it rather than wait when the send queue is full (a heartbeat ping: a
    full queue already proves traffic)."""

    frame: str
    droppable: bool = False


@dataclass(frozen=True, slots=True)
class Generate:
    """Start a generation for the chat ``chat_id`` and follow it from its first token."""

    chat_id: str
    body: dict[str, Any]
    session_id: str
    idle_limit_s: float


@dataclass(frozen=True, slots=True)
class Follow:
    """Follow an existing stream after index ``after`` as ``chat_id`` (``start`` says replay).

    It replaces this socket's follower of ``chat_id``, if any: two followers of one stream
    would send its tokens twice."""

    record: StreamRecord
    chat_id: str
    after: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a stream's generation (its follower, if any, then sends ``cancelled``)."""

    record: StreamRecord


@dataclass(frozen=True, slots=True)
class CloseNow:
    """Close the socket without flushing the send queue (a dead or misbehaving peer)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class QueueTutorial:
    """Tutorial shape: queue this upstream body behind the socket's running stream."""

    body: dict[str, Any]


Decision = Send | Generate | Follow | Cancel | CloseNow | QueueTutorial


class Followed(Protocol):
    """What the session reads of a stream its socket follows (the socket's subscription)."""

    @property
    def record(self) -> StreamRecord: ...


class SocketSession:
    """One socket's side of the protocol: v1 when it has a ``session``, else the tutorial shape.

    ``following`` (passed to :meth:`receive`) maps each chat id this socket follows to its
    subscription; the socket owns that map, because its entries come and go with forwarder
    tasks.
    """

    # One per socket, and a server may hold thousands of idle sockets: no per-instance dict.
    __slots__ = ("_beats", "bucket", "last_heard", "session", "settings", "store")

    def __init__(
        self, settings: Settings, store: StreamStore, session: Session | None, now: float
    ) -> None:
        self.settings = settings
        self.store = store
        # None: the tutorial shape, which has no session and no resume.
        self.session = session
        self.bucket = TokenBucket(settings.messages_per_second, settings.message_burst, now)
        self.last_heard = now
        self._beats = 0

    # --- server-initiated frames
    def hello(self) -> str:
        """The first frame of a v1 socket."""
        session = self._v1_session()
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

    def heartbeat(self, now: float) -> list[Decision]:
        """One beat of the app-level heartbeat (v1): a ``ping``, or the close of a silent peer."""
        if now - self.last_heard > self.settings.heartbeat_deadline_s:
            return [CloseNow(1011, "heartbeat timeout: no message from the client")]
        self._beats += 1
        return [Send(encode(Ping(ts=self._beats)), droppable=True)]

    # --- client frames
    def receive(
        self,
        text: str | None,
        now: float,
        *,
        following: Mapping[str, Followed],
        shutting_down: bool,
    ) -> list[Decision]:
        """One client frame (``text`` None: a binary frame) arriving at ``now``."""
        # Any frame, a pong included, proves the peer alive; a rate-limited one too.
        self.last_heard = now
        if not self.bucket.allow(now):
            limit = self.settings.messages_per_second
            return [
                self._error(
                    "rate_limited",
                    f"more than {limit:g} messages per second; message dropped",
                    retryable=True,
                )
            ]
        if text is None:
            return [
                self._error(
                    "binary_not_supported", "binary frames are not supported; send JSON text"
                )
            ]
        if self.session is None:
            return self._tutorial(text)
        try:
            message = parse_client_message(text)
        except ProtocolError as exc:
            return [self._error(exc.code, exc.message, msg_id=exc.msg_id)]
        if isinstance(message, ChatRequest):
            return self._chat(self.session, message, following, shutting_down)
        if isinstance(message, CancelRequest):
            return self._cancel(self.session, message, following)
        if isinstance(message, ResumeRequest):
            return self._resume(message, following)
        if isinstance(message, PingRequest):
            return [Send(encode(Pong(ts=message.ts)))]
        return []  # a pong: its arrival was all it had to say

    def _chat(
        self,
        session: Session,
        chat: ChatRequest,
        following: Mapping[str, Followed],
        shutting_down: bool,
    ) -> list[Decision]:
        owner = session
        if chat.resume_token is not None and chat.resume_token != owner.resume_token:
            # A resend on a new socket: the token proves the earlier session, but only for the
            # same client_id (a leaked token alone does not hand over someone's streams).
            proven = self.store.session_by_token(chat.resume_token)
            if proven is None or proven.client_id != session.client_id:
                return [self._error("forbidden", "unknown or expired resume_token", msg_id=chat.id)]
            owner = proven
        existing = self.store.find(owner.session_id, chat.id)
        if existing is None and owner is not session:
            existing = self.store.find(session.session_id, chat.id)
        if existing is not None:
            # Idempotent resend: never a second generation; replay after ``after``, then live.
            if existing.state is StreamState.CANCELLED and (
                existing.outcome is not None and existing.outcome.error_code == "stream_expired"
            ):
                return [
                    self._error(
                        "stream_expired",
                        "the stream expired (no reader within the grace period); start a new chat",
                        msg_id=chat.id,
                        stream_id=existing.stream_id,
                    )
                ]
            return [Follow(existing, chat.id, chat.after)]
        if shutting_down:
            return [
                self._error(
                    "server_shutdown", "server is shutting down", msg_id=chat.id, retryable=True
                )
            ]
        current = following.get(chat.id)
        if current is not None and not current.record.terminal:
            # The id belongs to a stream this socket follows from another session.
            return [
                self._error("invalid_message", f"id {chat.id!r} is already in use", msg_id=chat.id)
            ]
        if _live(following) >= self.settings.max_streams_per_connection:
            return [
                self._error(
                    "too_many_streams",
                    f"at most {self.settings.max_streams_per_connection} streams per connection",
                    msg_id=chat.id,
                    retryable=True,
                )
            ]
        body = upstream_body_of(chat, self.settings.default_model)
        return [Generate(chat.id, body, session.session_id, self.settings.resume_grace_s)]

    def _cancel(
        self, session: Session, cancel: CancelRequest, following: Mapping[str, Followed]
    ) -> list[Decision]:
        current = following.get(cancel.id)
        record = current.record if current is not None else None
        if record is None:
            record = self.store.find(session.session_id, cancel.id)
        if record is None or record.terminal:
            state = "unknown" if record is None else f"already {record.state.value}"
            return [
                self._error(
                    "unknown_stream",
                    f"no active stream with id {cancel.id!r} ({state})",
                    msg_id=cancel.id,
                )
            ]
        if current is not None:
            return [Cancel(record)]  # its follower answers with the last index it sent
        # Nobody on this socket follows it: the answer comes from here.
        return [Cancel(record), Send(encode(Cancelled(id=cancel.id, index=-1)))]

    def _resume(self, resume: ResumeRequest, following: Mapping[str, Followed]) -> list[Decision]:
        record = self.store.get(resume.stream_id)
        if record is None:
            if self.store.expired(resume.stream_id):
                return [
                    self._error(
                        "stream_expired",
                        "the stream is no longer buffered; resend the chat",
                        stream_id=resume.stream_id,
                    )
                ]
            return [self._error("unknown_stream", "no such stream", stream_id=resume.stream_id)]
        owner = self.store.get_session(record.session_id)
        allowed = {record.resume_token} | ({owner.resume_token} if owner else set())
        if resume.resume_token not in allowed:
            return [
                self._error(
                    "forbidden",
                    "resume_token does not match this stream",
                    stream_id=record.stream_id,
                )
            ]
        if record.outcome is not None and record.outcome.error_code == "stream_expired":
            return [
                self._error(
                    "stream_expired",
                    "the stream expired (no reader within the grace period); resend the chat",
                    msg_id=record.chat_id,
                    stream_id=record.stream_id,
                )
            ]
        current = following.get(record.chat_id)
        # Resuming a stream this socket already follows restarts its replay: not one more.
        already = current is not None and current.record is record
        limit = self.settings.max_streams_per_connection
        if not already and _live(following) >= limit:
            return [
                self._error(
                    "too_many_streams",
                    f"at most {limit} streams per connection",
                    msg_id=record.chat_id,
                    retryable=True,
                )
            ]
        return [Follow(record, record.chat_id, resume.after)]

    def _tutorial(self, text: str) -> list[Decision]:
        try:
            request = parse_tutorial_message(text)
        except ProtocolError as exc:
            return [self._error(exc.code, exc.message)]
        return [QueueTutorial(upstream_body_of(request, self.settings.default_model))]

    # --- helpers
    def _v1_session(self) -> Session:
        if self.session is None:
            raise RuntimeError("the tutorial shape has no session")
        return self.session

    def _error(
        self,
        code: str,
        message: str,
        *,
        msg_id: str | None = None,
        stream_id: str | None = None,
        retryable: bool = False,
    ) -> Send:
        if self.session is None:
            return Send(tutorial_error(f"{code}: {message}"))
        error = Error(
            id=msg_id, stream_id=stream_id, code=code, message=message, retryable=retryable
        )
        return Send(encode(error))


def _live(following: Mapping[str, Followed]) -> int:
    """Streams this socket follows that are still generating (what the stream limit counts)."""
    return sum(1 for current in following.values() if not current.record.terminal)


# --- a followed stream's frames (v1): what a forwarder sends besides its token frames


def tool_call_frame(chat_id: str, event: ToolCallEvent) -> str:
    return encode(
        ToolCall(
            id=chat_id,
            index=event.index,
            call_index=event.call_index,
            call_id=event.call_id,
            name=event.name,
            arguments=event.arguments,
        )
    )


def outcome_message(
    record: StreamRecord, chat_id: str, outcome: Outcome, last_sent: int
) -> ServerMessage:
    """The message that ends a followed stream, on every transport; ``last_sent`` is the last
    index this reader got."""
    if outcome.state is StreamState.ENDED:
        return End(
            id=chat_id,
            finish_reason=outcome.finish_reason,
            usage=outcome.usage,
            tokens=len(record.buffer),
        )
    if outcome.state is StreamState.CANCELLED and outcome.error_code != "stream_expired":
        return Cancelled(id=chat_id, index=last_sent)
    # An abandoned stream is worth asking for again: the client was away, not the provider.
    return Error(
        id=chat_id,
        stream_id=record.stream_id,
        code=outcome.error_code or "upstream_error",
        message=outcome.error_message or "stream failed",
        retryable=outcome.retryable or outcome.error_code == "stream_expired",
    )


def outcome_frame(record: StreamRecord, chat_id: str, outcome: Outcome, last_sent: int) -> str:
    """:func:`outcome_message`, encoded as a WebSocket frame."""
    return encode(outcome_message(record, chat_id, outcome, last_sent))

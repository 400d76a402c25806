"""WebSocket protocol v1 (``llm-stream.v1``) from the client's side, without I/O.

``decode_v1`` turns one text frame into a typed event; ``encode_*`` build the client's
frames; :class:`V1Recorder` applies events to per-id :class:`StreamRecord` objects. The
asyncio client (:mod:`scenarios.clients.aio`) and the gevent Locust users both drive these,
which is why nothing here imports asyncio, a socket library or a clock. The protocol itself
is described in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference_server.wire import PROTOCOL_V1 as PROTOCOL
from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord

__all__ = [
    "PROTOCOL",
    "V1Cancelled",
    "V1End",
    "V1Error",
    "V1Event",
    "V1Hello",
    "V1Ping",
    "V1Pong",
    "V1Recorder",
    "V1Start",
    "V1Token",
    "V1ToolCall",
    "V1Unknown",
    "decode_v1",
    "encode_cancel",
    "encode_chat",
    "encode_ping",
    "encode_pong",
    "encode_resume",
]


@dataclass(frozen=True, slots=True)
class V1Hello:
    protocol: str
    session_id: str
    resume_token: str
    heartbeat_interval_ms: int | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class V1Start:
    id: str
    stream_id: str
    resume_token: str | None = None
    replay: bool = False


@dataclass(frozen=True, slots=True)
class V1Token:
    id: str
    index: int
    content: str


@dataclass(frozen=True, slots=True)
class V1ToolCall:
    id: str
    index: int
    call_index: int
    arguments: str
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class V1End:
    id: str
    finish_reason: str | None
    usage: Mapping[str, Any] | None = None
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class V1Cancelled:
    id: str
    index: int


@dataclass(frozen=True, slots=True)
class V1Error:
    code: str
    message: str
    retryable: bool = False
    id: str | None = None  # absent for connection-level errors
    stream_id: str | None = None  # for resume errors and stream failures


@dataclass(frozen=True, slots=True)
class V1Ping:
    ts: Any = None


@dataclass(frozen=True, slots=True)
class V1Pong:
    ts: Any = None


@dataclass(frozen=True, slots=True)
class V1Unknown:
    """A well-formed message of a type this client does not know (kept, not fatal)."""

    type: str
    raw: Mapping[str, Any]


V1Event = (
    V1Hello
    | V1Start
    | V1Token
    | V1ToolCall
    | V1End
    | V1Cancelled
    | V1Error
    | V1Ping
    | V1Pong
    | V1Unknown
)


# --- decoding --------------------------------------------------------------------------


def _load_object(data: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ClientProtocolError(f"frame is not a JSON object: {type(obj).__name__}")
    return obj


def _str(obj: Mapping[str, Any], key: str, kind: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ClientProtocolError(f"{kind!r} message: field {key!r} must be a string")
    return value


def _int(obj: Mapping[str, Any], key: str, kind: str) -> int:
    value = obj.get(key)
    # bool is an int in Python; a JSON true is not an index
    if not isinstance(value, int) or isinstance(value, bool):
        raise ClientProtocolError(f"{kind!r} message: field {key!r} must be an integer")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_map(obj: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def decode_v1(data: str | bytes) -> V1Event:
    """Decode one server frame. Raises :class:`ClientProtocolError` on a malformed one.

    Unknown fields are ignored and unknown types become :class:`V1Unknown`, as the
    protocol asks of both sides.
    """
    obj = _load_object(data)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ClientProtocolError("frame has no string 'type'")
    match kind:
        case "token":
            return V1Token(
                _str(obj, "id", kind), _int(obj, "index", kind), _str(obj, "content", kind)
            )
        case "start":
            return V1Start(
                _str(obj, "id", kind),
                _str(obj, "stream_id", kind),
                _opt_str(obj, "resume_token"),
                obj.get("replay") is True,
            )
        case "end":
            return V1End(
                _str(obj, "id", kind),
                _opt_str(obj, "finish_reason"),
                _opt_map(obj, "usage"),
                _opt_int(obj, "tokens"),
            )
        case "tool_call":
            args = obj.get("arguments", "")
            return V1ToolCall(
                _str(obj, "id", kind),
                _int(obj, "index", kind),
                _opt_int(obj, "call_index") or 0,
                args if isinstance(args, str) else json.dumps(args),
                _opt_str(obj, "call_id"),
                _opt_str(obj, "name"),
            )
        case "cancelled":
            index = _opt_int(obj, "index")
            return V1Cancelled(_str(obj, "id", kind), -1 if index is None else index)
        case "error":
            return V1Error(
                _str(obj, "code", kind),
                _opt_str(obj, "message") or "",
                obj.get("retryable") is True,
                _opt_str(obj, "id"),
                _opt_str(obj, "stream_id"),
            )
        case "hello":
            return V1Hello(
                _str(obj, "protocol", kind),
                _str(obj, "session_id", kind),
                _str(obj, "resume_token", kind),
                _opt_int(obj, "heartbeat_interval_ms"),
                _opt_map(obj, "limits") or {},
            )
        case "ping":
            return V1Ping(obj.get("ts"))
        case "pong":
            return V1Pong(obj.get("ts"))
        case _:
            return V1Unknown(kind, obj)


# --- encoding --------------------------------------------------------------------------


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_chat(
    id: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    resume_token: str | None = None,
    after: int | None = None,
    **extra: Any,
) -> str:
    """A ``chat`` frame; ``extra`` passes other request fields (temperature, tools...)."""
    msg: dict[str, Any] = {"type": "chat", "id": id, "messages": list(messages)}
    optional = {"model": model, "max_tokens": max_tokens, "resume_token": resume_token}
    msg.update({k: v for k, v in optional.items() if v is not None})
    if after is not None:
        msg["after"] = after
    msg.update(extra)
    return _dumps(msg)


def encode_cancel(id: str) -> str:
    return _dumps({"type": "cancel", "id": id})


def encode_resume(stream_id: str, after: int, resume_token: str) -> str:
    return _dumps(
        {"type": "resume", "stream_id": stream_id, "after": after, "resume_token": resume_token}
    )


def encode_ping(ts: Any = None) -> str:
    return _dumps({"type": "ping"} if ts is None else {"type": "ping", "ts": ts})


def encode_pong(ts: Any = None) -> str:
    return _dumps({"type": "pong"} if ts is None else {"type": "pong", "ts": ts})


# --- applying events to records --------------------------------------------------------


class V1Recorder:
    """Routes v1 events of one or more connections to per-id :class:`StreamRecord` objects.

    The I/O layer creates a record when it sends a ``chat`` (``track``), hands every decoded
    event to ``handle`` with the receive time, and calls ``connection_lost`` when the socket
    ends. Events for ids nobody tracks (another stream's tokens: cross-talk) are counted in
    ``stray`` instead of being dropped silently.
    """

    def __init__(self) -> None:
        self.records: dict[str, StreamRecord] = {}
        self.hello: V1Hello | None = None
        self.pings = 0
        self.connection_errors: list[V1Error] = []
        self.unknown: list[V1Unknown] = []
        self.stray: list[V1Event] = []

    def track(self, record: StreamRecord) -> StreamRecord:
        self.records[record.id] = record
        record.owner = id(self)
        return record

    def open_records(self) -> list[StreamRecord]:
        """Streams still running on this connection (not moved to another one)."""
        return [r for r in self.records.values() if not r.done and r.owner == id(self)]

    def handle(self, event: V1Event, t: float) -> StreamRecord | None:
        """Apply one event received at perf-counter time ``t``; return the record it touched."""
        if isinstance(event, V1Hello):
            self.hello = event
            return None
        if isinstance(event, V1Ping):
            self.pings += 1
            for open_record in self.open_records():
                open_record.heartbeats.append(t)
            return None
        if isinstance(event, V1Pong):
            return None
        if isinstance(event, V1Unknown):
            self.unknown.append(event)
            return None
        if event.id is None:
            assert isinstance(event, V1Error)  # the only event whose id may be absent
            self.connection_errors.append(event)
            return None
        record = self.records.get(event.id)
        if record is None:
            self.stray.append(event)
            return None
        match event:
            case V1Start():
                record.stream_id = event.stream_id
                if event.resume_token is not None:
                    record.resume_token = event.resume_token
                record.starts += 1
                record.replays += int(event.replay)
            case V1Token():
                record.add(event.index, event.content, t)
            case V1ToolCall():
                record.add(event.index, event.arguments, t, "tool_call")
                record.tool_calls.append(
                    {
                        "index": event.index,
                        "call_index": event.call_index,
                        "call_id": event.call_id,
                        "name": event.name,
                        "arguments": event.arguments,
                    }
                )
            case V1End():
                record.finish_reason = event.finish_reason
                record.usage = dict(event.usage) if event.usage is not None else None
                record.expected_tokens = event.tokens
                record.finish("completed", t)
            case V1Cancelled():
                record.cancelled_index = event.index
                record.finish("cancelled", t)
            case V1Error():
                record.error_code = event.code
                record.error_message = event.message
                record.error_retryable = event.retryable
                record.finish("error", t)
        return record

    def connection_lost(self, t: float, close_code: int | None) -> list[StreamRecord]:
        """Mark every stream still open as disconnected; return them."""
        lost = self.open_records()
        for record in lost:
            record.close_code = close_code
            record.finish("disconnected", t)
        return lost

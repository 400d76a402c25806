"""The tutorial-shaped WebSocket protocol from the client's side, without I/O.

Client sends ``{"messages": [...], "model": ...}``; the server answers
``{"type": "token", "content": ...}`` per token, then ``{"type": "end"}`` (reference server)
or the in-band token ``{"type": "token", "content": "[END]"}`` (naive server), or
``{"type": "error", "message": ...}``. Messages carry no stream id and no index, so a
client can only attribute tokens to "the message I sent last": that is the flaw the
scenarios show, and :class:`TutorialRecorder` reproduces it faithfully.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord

END_MARKER = "[END]"

__all__ = [
    "END_MARKER",
    "TutorialEnd",
    "TutorialError",
    "TutorialEvent",
    "TutorialRecorder",
    "TutorialToken",
    "TutorialUnknown",
    "decode_tutorial",
    "encode_tutorial",
]


@dataclass(frozen=True, slots=True)
class TutorialToken:
    content: str


@dataclass(frozen=True, slots=True)
class TutorialEnd:
    pass


@dataclass(frozen=True, slots=True)
class TutorialError:
    message: str


@dataclass(frozen=True, slots=True)
class TutorialUnknown:
    raw: Mapping[str, Any]


TutorialEvent = TutorialToken | TutorialEnd | TutorialError | TutorialUnknown


def decode_tutorial(data: str | bytes) -> TutorialEvent:
    """Decode one server frame; :class:`ClientProtocolError` when it is not a JSON object."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ClientProtocolError(f"frame is not a JSON object: {type(obj).__name__}")
    match obj.get("type"):
        case "token":
            content = obj.get("content")
            if not isinstance(content, str):
                raise ClientProtocolError("'token' message: field 'content' must be a string")
            return TutorialToken(content)
        case "end":
            return TutorialEnd()
        case "error":
            message = obj.get("message")
            return TutorialError(message if isinstance(message, str) else json.dumps(message))
        case _:
            return TutorialUnknown(obj)


def encode_tutorial(
    messages: Sequence[Mapping[str, Any]], *, model: str | None = None, **extra: Any
) -> str:
    msg: dict[str, Any] = {"messages": list(messages)}
    if model is not None:
        msg["model"] = model
    msg.update(extra)
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)


class TutorialRecorder:
    """Attributes every token to the stream sent last, like the tutorial's frontend hook.

    ``end_marker``: token content that ends the stream in-band (``"[END]"``, the naive
    server's convention), or None to treat it as text. An explicit ``end`` message always
    ends the stream. ``finish_reason`` records how it ended: ``"end"`` or ``"end_marker"``.
    Indexes are positions in arrival order (the protocol has none).
    """

    def __init__(self, end_marker: str | None = END_MARKER) -> None:
        self.end_marker = end_marker
        self.current: StreamRecord | None = None
        self.records: list[StreamRecord] = []
        # frames that arrived while no stream was open (e.g. after the in-band end)
        self.stray: list[TutorialEvent] = []
        self.unknown: list[TutorialUnknown] = []

    def begin(self, record: StreamRecord, t: float) -> StreamRecord:
        """A new message was sent: it supersedes the open one (the server cancels it)."""
        if self.current is not None:
            self.current.finish("cancelled", t)
        self.current = record
        self.records.append(record)
        record.owner = id(self)
        return record

    def handle(self, event: TutorialEvent, t: float) -> StreamRecord | None:
        if isinstance(event, TutorialUnknown):
            self.unknown.append(event)
            return None
        record = self.current
        if record is None or record.done:
            self.stray.append(event)
            return None
        match event:
            case TutorialToken(content) if self.end_marker is not None and (
                content == self.end_marker
            ):
                record.finish_reason = "end_marker"
                record.finish("completed", t)
            case TutorialToken(content):
                record.add(len(record.arrivals), content, t)
            case TutorialEnd():
                record.finish_reason = "end"
                record.finish("completed", t)
            case TutorialError(message):
                record.error_code = "error"
                record.error_message = message
                record.finish("error", t)
        return record

    def connection_lost(self, t: float, close_code: int | None) -> StreamRecord | None:
        record = self.current
        if record is not None and not record.done:
            record.close_code = close_code
            record.finish("disconnected", t)
            return record
        return None

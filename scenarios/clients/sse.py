"""Server-sent events from the client's side, without I/O.

:class:`SSEParser` is an incremental parser following the WHATWG rules (HTML §9.2.6): bytes
in any split go in, events come out. It handles CRLF, CR and LF line ends (a CR at the end of
one chunk and an LF at the start of the next are one line end), a leading BOM, comments,
multi-line ``data``, ``id`` (kept across events, ignored when it contains NUL) and ``retry``
(ASCII digits only). Comments are returned too, because heartbeats are comments and the
scenarios count them.

:class:`SSERecorder` applies the reference server's stream events (``docs/protocol.md``:
``id:`` = token index) to a :class:`StreamRecord`.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord

__all__ = ["SSEComment", "SSEEvent", "SSEParser", "SSERecorder"]

_LINE_END = re.compile(r"[\r\n]")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """A dispatched event. ``id`` is the last event ID at dispatch time (None when empty)."""

    data: str
    event: str = "message"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A comment line (``: text``), with the colon and one following space removed."""

    text: str


class SSEParser:
    """Incremental SSE parser: ``feed(bytes) -> events``; ``feed_eof()`` at the end."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._at_start = True  # a BOM is only stripped at the very start of the stream
        self._data: list[str] = []
        self._event_type = ""
        self.last_event_id = ""
        self.retry_ms: int | None = None
        # set by feed_eof when the stream ended in the middle of an event (no blank line)
        self.truncated = False

    def feed(self, chunk: bytes) -> list[SSEEvent | SSEComment]:
        return self.feed_text(self._decoder.decode(chunk))

    def feed_text(self, text: str) -> list[SSEEvent | SSEComment]:
        if self._at_start and text:
            text = text.removeprefix("\ufeff")
            self._at_start = False
        if self._skip_lf and text:
            text = text.removeprefix("\n")
            self._skip_lf = False
        self._buf += text
        out: list[SSEEvent | SSEComment] = []
        pos = 0
        buf = self._buf
        while (m := _LINE_END.search(buf, pos)) is not None:
            end = m.start()
            line = buf[pos:end]
            if buf[end] == "\r":
                if end + 1 < len(buf):
                    pos = end + 2 if buf[end + 1] == "\n" else end + 1
                else:
                    pos = end + 1
                    self._skip_lf = True
            else:
                pos = end + 1
            item = self._line(line)
            if item is not None:
                out.append(item)
        self._buf = buf[pos:]
        return out

    def feed_eof(self) -> list[SSEEvent | SSEComment]:
        """End of stream: per the spec an event without its blank line is discarded."""
        out = self.feed_text(self._decoder.decode(b"", final=True))
        self.truncated = bool(self._buf or self._data or self._event_type)
        self._buf = ""
        self._data = []
        self._event_type = ""
        return out

    def _line(self, line: str) -> SSEEvent | SSEComment | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return SSEComment(line[1:].removeprefix(" "))
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        match name:
            case "event":
                self._event_type = value
            case "data":
                self._data.append(value)
            case "id":
                if "\0" not in value:
                    self.last_event_id = value
            case "retry":
                if value.isascii() and value.isdigit():
                    self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type = self._data, self._event_type
        self._data, self._event_type = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event_type or "message", self.last_event_id or None)


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


class SSERecorder:
    """Applies the reference server's SSE stream to one :class:`StreamRecord`.

    The event's kind is its ``event:`` name, or the ``type`` field of its JSON data when the
    name is the default ``message``. Token index: the data's ``index``, else the ``id:``.
    ``data: [DONE]`` (OpenAI style) also ends the stream. Comments count as heartbeats.
    """

    def __init__(self, record: StreamRecord) -> None:
        self.record = record
        self.heartbeats = 0
        self.events: int = 0

    def handle(self, item: SSEEvent | SSEComment, t: float) -> None:
        record = self.record
        if isinstance(item, SSEComment):
            self.heartbeats += 1
            if not record.done:
                record.heartbeats.append(t)
            return
        self.events += 1
        if item.id is not None:
            record.last_event_id = item.id
        if item.data == "[DONE]":
            record.finish("completed", t)
            return
        try:
            data = json.loads(item.data)
        except ValueError:
            raise ClientProtocolError(f"SSE data is not JSON: {item.data[:80]!r}") from None
        if not isinstance(data, dict):
            raise ClientProtocolError(f"SSE data is not a JSON object: {item.data[:80]!r}")
        kind = item.event if item.event != "message" else str(data.get("type", "message"))
        match kind:
            case "token" | "tool_call":
                index = _as_int(data.get("index"))
                if index is None:
                    index = _as_int(item.id)
                if index is None:
                    raise ClientProtocolError(f"SSE {kind} without index: {item.data[:80]!r}")
                if kind == "token":
                    record.add(index, str(data.get("content", "")), t)
                else:
                    args = data.get("arguments", "")
                    record.add(
                        index, args if isinstance(args, str) else json.dumps(args), t, "tool_call"
                    )
                    record.tool_calls.append(data)
            case "start":
                if isinstance(data.get("stream_id"), str):
                    record.stream_id = data["stream_id"]
                if isinstance(data.get("resume_token"), str):
                    record.resume_token = data["resume_token"]
                record.starts += 1
                record.replays += int(data.get("replay") is True)
            case "end" | "done":
                fr = data.get("finish_reason")
                record.finish_reason = fr if isinstance(fr, str) else None
                usage = data.get("usage")
                record.usage = usage if isinstance(usage, dict) else None
                record.expected_tokens = _as_int(data.get("tokens"))
                record.finish("completed", t)
            case "cancelled":
                record.cancelled_index = _as_int(data.get("index"))
                record.finish("cancelled", t)
            case "error":
                code = data.get("code")
                record.error_code = code if isinstance(code, str) else "error"
                msg = data.get("message")
                record.error_message = msg if isinstance(msg, str) else None
                record.error_retryable = data.get("retryable") is True
                record.finish("error", t)
            case _:
                pass  # unknown kinds are ignored, as the protocol asks

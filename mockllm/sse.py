"""Server-Sent Events (WHATWG HTML, "event stream"), both ways, without I/O: the repository's one
SSE encoder and one SSE decoder.

On a token's way: the mock frames each chat chunk as a ``data:`` event (:data:`DATA` and
:data:`END`, pre-joined in ``formats/openai_chat.py``; :func:`encode` elsewhere); the reference
server reads the provider's stream with :class:`SSEParser` (its upstream client) and frames its
own ``/v1/streams/{id}/events`` with :func:`encode`, :func:`comment` (heartbeats) and
:func:`retry`; the scenario clients and the load tests read that with :class:`SSEParser` again.
It is pure and lives in the lowest package, so that every package can share it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATA",
    "DONE",
    "END",
    "SSEComment",
    "SSEEvent",
    "SSEParser",
    "comment",
    "encode",
    "retry",
    "split_event",
]

# A one-line ``data`` event is exactly DATA + payload + END; the chunk encoder of the mock
# pre-joins these around its JSON because it runs once per token.
DATA = b"data: "
END = b"\n\n"
# OpenAI's end of a chat stream.
DONE = DATA + b"[DONE]" + END

_BOM = "\ufeff".encode()


def _field(name: bytes, value: str) -> bytes:
    if "\n" in value or "\r" in value:
        # A line break would end the field early and turn the rest into another field.
        what = name.decode() or "comment"
        raise ValueError(f"an SSE {what} cannot contain a line break: {value!r}")
    return name + b": " + value.encode() + b"\n"


def encode(data: bytes | str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event. Multi-line data becomes several ``data:`` lines, as the spec requires."""
    if isinstance(data, str):
        data = data.encode()
    out = bytearray()
    if event is not None:
        out += _field(b"event", event)
    if id is not None:
        out += _field(b"id", id)
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        out += DATA + line + b"\n"
    out += b"\n"
    return bytes(out)


def comment(text: str = "") -> bytes:
    """A comment line and the blank line after it: a heartbeat no client shows as an event."""
    if not text:
        return b":" + END
    return _field(b"", text) + b"\n"


def retry(ms: int) -> bytes:
    """The client's reconnection delay (``retry: N``), alone in its block."""
    return b"retry: " + str(int(ms)).encode() + END


def split_event(event: bytes) -> tuple[bytes, bytes]:
    """Two halves of an event, cut in the middle of its payload (for the split_chunk fault)."""
    cut = max(1, len(event) // 2)
    return event[:cut], event[cut:]


# Not frozen: a frozen dataclass is built through object.__setattr__, which here cost as much
# as parsing the event's line, once per upstream token in the reference server.
@dataclass(slots=True)
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
    """Incremental decoder: ``feed(bytes)`` in any split returns the events and comments the
    bytes completed; ``feed_eof()`` at the end of the stream.

    It follows the spec's parsing rules (HTML 9.2.6): CRLF, LF and CR each end a line, also a
    CRLF split across two reads; a leading BOM is dropped; ``data`` lines join with LF; ``id``
    is kept across events and ignored when it contains NUL; ``retry`` takes ASCII digits only;
    an event without data dispatches nothing. Comments are returned too, because heartbeats are
    comments and the scenarios count them. Lines are cut as bytes and decoded one at a time (no
    multi-byte UTF-8 sequence contains CR or LF): the reference server runs this once per
    upstream token, and an incremental text decoder cost more than the rest of its parsing.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._after_cr = False  # the last read ended with CR: a leading LF belongs to it
        self._at_start = True  # a BOM is only dropped at the very start of the stream
        self._data: list[str] = []
        self._event_type = ""
        self.last_event_id = ""
        self.retry_ms: int | None = None
        # set by feed_eof when the stream ended in the middle of an event (no blank line)
        self.truncated = False

    def feed(self, chunk: bytes) -> list[SSEEvent | SSEComment]:
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._partial:
            chunk = self._partial + chunk
        *lines, self._partial = chunk.split(b"\n")
        if self._at_start and lines:
            lines[0] = self._first(lines[0])
        out: list[SSEEvent | SSEComment] = []
        data = self._data
        for raw in lines:
            # The two lines of nearly every event, inline: this runs once per upstream token.
            if raw.startswith(b"data: "):
                data.append(raw[6:].decode("utf-8", "replace"))
            elif not raw:
                if data:
                    event = self._event_type or "message"
                    out.append(SSEEvent("\n".join(data), event, self.last_event_id or None))
                    data = self._data = []
                self._event_type = ""
            else:
                item = self._line(raw.decode("utf-8", "replace"))
                if item is not None:
                    out.append(item)
        return out

    def feed_eof(self, *, dispatch_unfinished: bool = False) -> list[SSEEvent | SSEComment]:
        """End of stream. Per the spec an event without its blank line is discarded (and
        ``truncated`` set); ``dispatch_unfinished`` dispatches it instead, last line included,
        as OpenAI's SDK does with a provider's last event."""
        rest, self._partial = self._partial, b""
        self.truncated = bool(rest or self._data or self._event_type)
        out: list[SSEEvent | SSEComment] = []
        if dispatch_unfinished:
            line = self._first(rest) if self._at_start else rest
            for item in (
                self._line(line.decode("utf-8", "replace")) if line else None,
                self._dispatch(),
            ):
                if item is not None:
                    out.append(item)
        self._data = []
        self._event_type = ""
        return out

    def _first(self, raw: bytes) -> bytes:
        """The stream's first line, without a BOM."""
        self._at_start = False
        return raw.removeprefix(_BOM)

    def _line(self, line: str) -> SSEEvent | SSEComment | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return SSEComment(line[1:].removeprefix(" "))
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type = self._data, self._event_type
        self._data, self._event_type = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event_type or "message", self.last_event_id or None)

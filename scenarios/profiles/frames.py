"""Reading a server's frames with a profile, and rendering its requests. Pure, no I/O.

:class:`FrameReader` turns one frame (a WebSocket message, an SSE event's data, an HTTP line
or chunk) into what it means under the profile's rules: a token, the end, an error, a cancel
acknowledgement, something to ignore, or :class:`Unreadable`, which carries the frame itself so
a report can show what the server sent. :class:`ProfileRecorder` applies those events to the
client's :class:`StreamRecord` objects (tokens belong to the message sent last, as in every
protocol without stream ids), including the ends that are not frames: a silence
(``idle_end_ms``) and the connection closing (``on_close``). :class:`LineSplitter` and
:class:`ChunkDecoder` cut an HTTP body into frames; :func:`render` fills request templates.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from scenarios.clients.records import StreamRecord
from scenarios.profiles.schema import FrameRule, Profile, parse_path

__all__ = [
    "Cancelled",
    "ChunkDecoder",
    "End",
    "Error",
    "Frame",
    "FrameEvent",
    "FrameReader",
    "Heartbeat",
    "Ignored",
    "LineSplitter",
    "ProfileRecorder",
    "RequestValues",
    "Token",
    "Unreadable",
    "render",
    "render_headers",
    "render_text",
    "render_url",
    "ui_messages",
]

_PREFIXED = re.compile(r"^([0-9A-Za-z_-]+):(.*)$", re.DOTALL)
# How much of an unreadable frame a report shows.
SHOWN_CHARS = 160


@dataclass(frozen=True, slots=True)
class Frame:
    """One unit the server sent: ``data`` is its text; ``event`` the SSE event name."""

    data: str
    event: str | None = None
    binary: bool = False

    def shown(self) -> str:
        text = self.data if len(self.data) <= SHOWN_CHARS else self.data[:SHOWN_CHARS] + "..."
        kind = "binary frame" if self.binary else "frame"
        named = f" (event {self.event!r})" if self.event not in (None, "message") else ""
        return f"{kind}{named} {text!r}"


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class End:
    finish_reason: str | None = None
    usage: Any = None


@dataclass(frozen=True, slots=True)
class Error:
    code: str | None
    message: str | None
    retryable: bool | None = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Ignored:
    finish_reason: str | None = None
    usage: Any = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A frame no rule reads: reported with the frame, never silently dropped."""

    frame: Frame
    why: str

    def describe(self) -> str:
        return f"{self.why}: {self.frame.shown()}"


FrameEvent = Token | End | Error | Cancelled | Heartbeat | Ignored | Unreadable
_MISSING = object()


def _get(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return _MISSING
            value = value[part]
        else:
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
    return value


@dataclass(frozen=True)
class _Rule:
    rule: FrameRule
    match: tuple[tuple[tuple[str | int, ...], tuple[Any, ...]], ...]
    has: tuple[str | int, ...] | None
    events: frozenset[str] | None
    prefixes: frozenset[str] | None

    @classmethod
    def compile(cls, rule: FrameRule) -> _Rule:
        def options(value: Any) -> tuple[Any, ...]:
            return tuple(value) if isinstance(value, list) else (value,)

        def names(value: str | list[str] | None) -> frozenset[str] | None:
            return None if value is None else frozenset(options(value))

        return cls(
            rule,
            tuple((parse_path(k), options(v)) for k, v in rule.match.items()),
            parse_path(rule.has) if rule.has is not None else None,
            names(rule.event),
            names(rule.prefix),
        )

    def matches(self, frame: Frame, prefix: str | None, value: Any) -> bool:
        rule = self.rule
        if rule.raw is not None and frame.data != rule.raw:
            return False
        if self.events is not None and (frame.event or "message") not in self.events:
            return False
        if self.prefixes is not None and prefix not in self.prefixes:
            return False
        if self.has is not None and _get(value, self.has) in (_MISSING, None):
            return False
        for path, accepted in self.match:
            got = _get(value, path)
            # JSON true is not 1: compare types too.
            if got is _MISSING or not any(type(got) is type(a) and got == a for a in accepted):
                return False
        return True


class FrameReader:
    """Classify frames with a profile's rules (the first rule that matches wins)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._rules = [_Rule.compile(r) for r in profile.frames]

    def read(self, frame: Frame) -> FrameEvent:
        fmt = self.profile.format
        prefix: str | None = None
        value: Any = frame.data
        parsed = True
        if fmt == "json":
            try:
                value = json.loads(frame.data)
            except ValueError:
                value, parsed = _MISSING, False
        elif fmt == "prefixed":
            m = _PREFIXED.match(frame.data)
            if m is None:
                value, parsed = _MISSING, False
            else:
                prefix = m.group(1)
                try:
                    value = json.loads(m.group(2))
                except ValueError:
                    value, parsed = _MISSING, False
        for compiled in self._rules:
            needs_value = compiled.match or compiled.has is not None
            if needs_value and not parsed:
                continue
            if compiled.matches(frame, prefix, value):
                return self._apply(compiled.rule, frame, value)
        if not parsed:
            what = "not JSON" if fmt == "json" else "not an 'X:json' line"
            return Unreadable(
                frame, f"a {what} frame that no rule of profile {self.profile.name!r} reads"
            )
        return Unreadable(frame, f"a frame that no rule of profile {self.profile.name!r} reads")

    def _apply(self, rule: FrameRule, frame: Frame, value: Any) -> FrameEvent:
        def field_(path: str | None) -> Any:
            if path is None or value is _MISSING:
                return None
            got = _get(value, parse_path(path))
            return None if got is _MISSING else got

        def text_or_none(path: str | None) -> str | None:
            got = field_(path)
            if got is None or isinstance(got, str):
                return got
            return json.dumps(got, ensure_ascii=False)

        finish = text_or_none(rule.finish_reason)
        match rule.kind:
            case "token":
                assert rule.text is not None
                text = frame.data if value is _MISSING else field_(rule.text)
                if not isinstance(text, str):
                    return Unreadable(
                        frame, f"the token rule's text {rule.text!r} is not a string here"
                    )
                index = field_(rule.index)
                return Token(text, index if isinstance(index, int) else None)
            case "end":
                return End(finish, field_(rule.usage))
            case "error":
                retryable = field_(rule.retryable)
                message = text_or_none(rule.message)
                return Error(
                    text_or_none(rule.code),
                    message if message is not None else frame.data[:SHOWN_CHARS],
                    retryable if isinstance(retryable, bool) else None,
                )
            case "cancelled":
                index = field_(rule.index)
                return Cancelled(index if isinstance(index, int) else None)
            case "heartbeat":
                return Heartbeat()
            case _:
                return Ignored(finish, field_(rule.usage))


class LineSplitter:
    """Bytes in any split -> complete lines (without their CR/LF); blank lines are skipped."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += self._decoder.decode(chunk)
        *lines, self._buf = self._buf.split("\n")
        return [line.removesuffix("\r") for line in lines if line.strip()]

    def feed_eof(self) -> list[str]:
        rest = self._buf + self._decoder.decode(b"", final=True)
        self._buf = ""
        return [rest.removesuffix("\r")] if rest.strip() else []


class ChunkDecoder:
    """Bytes -> text per received chunk (a UTF-8 character split across chunks is kept whole)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        return [text] if text else []

    def feed_eof(self) -> list[str]:
        text = self._decoder.decode(b"", final=True)
        return [text] if text else []


@dataclass
class ProfileRecorder:
    """Applies a server's frames to the stream sent last on one connection.

    The ends that are not frames: :meth:`idle` (a silence of ``idle_end_ms`` after a token)
    and :meth:`closed` (the connection closing: the end or an error, per ``on_close``). A frame
    no rule reads ends the open stream as an ``error`` with code ``protocol_error`` and the
    frame in its message, and is kept in ``unreadable``.
    """

    profile: Profile
    reader: FrameReader = field(init=False)
    current: StreamRecord | None = None
    records: list[StreamRecord] = field(default_factory=list)
    stray: list[FrameEvent] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    last_token_t: float | None = None
    _noted: tuple[int, int] = (0, 0)  # how many stray / unreadable frames notes() reported

    def __post_init__(self) -> None:
        self.reader = FrameReader(self.profile)

    def begin(self, record: StreamRecord, t: float) -> StreamRecord:
        """A new message was sent: it supersedes the open one (no ids tell them apart)."""
        if self.current is not None and not self.current.done:
            self.current.finish("cancelled", t)
        self.current = record
        self.records.append(record)
        self.last_token_t = None
        return record

    def handle(self, frame: Frame, t: float) -> FrameEvent:
        event = self.reader.read(frame)
        record = self.current
        if isinstance(event, Unreadable):
            self.unreadable.append(event)
            if record is not None and not record.done:
                record.error_code = "protocol_error"
                record.error_message = event.describe()
                record.finish("error", t)
            return event
        if record is None or record.done:
            if not isinstance(event, Ignored | Heartbeat):
                self.stray.append(event)
            return event
        match event:
            case Token(text, index):
                if text:  # an empty delta (a role-only chunk) is no token
                    record.add(index if index is not None else len(record.arrivals), text, t)
                    self.last_token_t = t
            case End(finish, usage):
                record.finish_reason = finish or record.finish_reason or "end"
                record.usage = usage if usage is not None else record.usage
                record.finish("completed", t)
            case Error(code, message, retryable):
                record.error_code = code or "error"
                record.error_message = message
                record.error_retryable = retryable
                record.finish("error", t)
            case Cancelled(index):
                record.cancelled_index = index
                record.finish("cancelled", t)
            case Heartbeat():
                record.heartbeats.append(t)
            case Ignored(finish, usage):
                record.finish_reason = finish or record.finish_reason
                record.usage = usage if usage is not None else record.usage
        return event

    def notes(self) -> list[str]:
        """What arrived outside an open stream since the last call, in words (for reports):
        tokens after the end (an in-band end marker in the middle of an answer) and frames
        no rule reads."""
        stray, unreadable = self.stray[self._noted[0] :], self.unreadable[self._noted[1] :]
        self._noted = (len(self.stray), len(self.unreadable))
        out = []
        tokens = [e for e in stray if isinstance(e, Token)]
        if tokens:
            text = "".join(e.text for e in tokens)
            shown = text if len(text) <= 60 else text[:60] + "..."
            out.append(f"{len(tokens)} tokens arrived after the stream had ended: {shown!r}")
        others = len(stray) - len(tokens)
        if others:
            out.append(f"{others} end, error or cancel frames arrived with no stream open")
        out += [f"protocol error: {u.describe()}" for u in unreadable]
        return out

    def heartbeat(self, t: float) -> None:
        """A heartbeat that is no frame (an SSE comment) arrived."""
        if self.current is not None and not self.current.done:
            self.current.heartbeats.append(t)

    def idle(self, t: float) -> bool:
        """End the open stream when it has been silent for ``idle_end_ms`` after a token."""
        record, gap = self.current, self.profile.idle_end_ms
        if record is None or record.done or gap is None or self.last_token_t is None:
            return False
        if (t - self.last_token_t) * 1000 < gap:
            return False
        record.finish_reason = "idle"
        record.finish("completed", self.last_token_t + gap / 1000)
        return True

    def closed(self, t: float, clean: bool, close_code: int | None = None) -> StreamRecord | None:
        """The connection closed (``clean``: a close 1000 or a complete HTTP body)."""
        record = self.current
        if record is None or record.done:
            return None
        record.close_code = close_code
        if clean and self.profile.on_close == "end":
            # An end frame the profile ignores may have said why (AI SDK's finish): keep it.
            record.finish_reason = record.finish_reason or "close"
            record.finish("completed", t)
        else:
            record.error_code = "closed" if self.profile.transport == "websocket" else "cut"
            record.error_message = _close_message(self.profile, clean, close_code)
            record.finish("error", t)
        return record


def _close_message(profile: Profile, clean: bool, close_code: int | None) -> str:
    if profile.transport == "websocket":
        how = "with no close frame (1006)" if close_code in (None, 1006) else f"with {close_code}"
        return f"the connection closed {how} before the end of the answer"
    if clean:
        return "the response body ended before the end of the answer"
    return "the response body was cut off (an incomplete chunked body or a reset)"


# --------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestValues:
    """What a request template can say about one message."""

    prompt: str
    model: str
    messages: Sequence[Mapping[str, Any]]
    client_id: str
    stream_id: str
    max_tokens: int | None = None

    def value(self, name: str) -> Any:
        if name == "ui_messages":
            return ui_messages(self.messages)
        if name == "messages":
            return [dict(m) for m in self.messages]
        return getattr(self, name)


def ui_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as the AI SDK's ``useChat`` sends them (UIMessage with text parts)."""
    return [
        {
            "id": f"msg-{i}",
            "role": m.get("role", "user"),
            "parts": [{"type": "text", "text": str(m.get("content", ""))}],
        }
        for i, m in enumerate(messages)
    ]


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")
_WHOLE = re.compile(r"^\{([a-z_]+)\}$")


def _fill(template: str, values: RequestValues, escape: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        value = values.value(m.group(1))
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        return quote(text, safe="") if escape else text

    return _PLACEHOLDER.sub(sub, template)


def render(template: Any, values: RequestValues) -> Any:
    """Fill a body template: ``"{messages}"`` alone becomes the list, a key whose whole value
    is a placeholder that is None (``"{max_tokens}"`` unset) is left out."""
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole is not None:
            return values.value(whole.group(1))
        return _fill(template, values, escape=False)
    if isinstance(template, Mapping):
        out = {}
        for key, item in template.items():
            filled = render(item, values)
            if filled is None and isinstance(item, str) and _WHOLE.match(item):
                continue
            out[_fill(str(key), values, escape=False)] = filled
        return out
    if isinstance(template, list):
        return [render(item, values) for item in template]
    return template


def render_text(template: str, values: RequestValues) -> str:
    """Fill a text template (a plain-text frame or body): every value as text, lists as JSON."""
    return _fill(template, values, escape=False)


def render_url(template: str, values: RequestValues) -> str:
    return _fill(template, values, escape=True)


def render_headers(headers: Mapping[str, str], values: RequestValues) -> dict[str, str]:
    return {k: _fill(v, values, escape=False) for k, v in headers.items()}

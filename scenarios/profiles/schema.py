"""Target profiles as data: how to reach a streaming server and how to read what it sends.

A profile names the transport (WebSocket, SSE, or plain streamed HTTP), the URL template, the
request for one message, the rules that classify each frame (a token and where its text is,
the end, an error, a cancel acknowledgement), how a stream ends besides a frame (the
connection closing, a silence) and what the server can do (a cancel message, resume). Built-in
profiles live in ``scenarios/profiles/builtin/``; a user writes a YAML file of the same shape,
usually starting from one of them with ``extends:``.

Pure: this module validates; :mod:`scenarios.profiles.frames` reads frames with a profile and
:mod:`scenarios.profiles.loader` finds and loads the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CAPABILITIES",
    "Capability",
    "FrameRule",
    "Profile",
    "parse_path",
    "placeholders",
]

# What a scenario may need of a target; see ``Profile.capabilities`` and the runner.
Capability = Literal[
    "cancel_message",  # a message that cancels one stream (v1 `cancel`)
    "resume",  # a stream continues after a reconnect (v1 `resume`, SSE Last-Event-ID)
    "several_streams",  # several streams at once on one connection, told apart by id
    "indexes",  # tokens carry their index
    "error_codes",  # errors carry protocol v1's codes (upstream_error, upstream_timeout...)
    "v1_http",  # the reference HTTP stream API (SSE, polling, blocking of docs/protocol.md)
    "client_id_in_url",  # the URL names the client ({client_id})
    "heartbeat",  # the client can see the server's heartbeat (v1 ping, SSE comments, a rule)
    "pong",  # the client must answer the server's heartbeat (v1 pong): a silent client is closed
    "finish_reason",  # the client is told why the answer ended (stop, length...)
    "usage",  # the client is told the token usage
    "resume_token",  # a resume proves the stream with a secret token (v1)
    "v1_protocol",  # the target speaks protocol v1's messages (conformance probes)
    "tutorial_shape",  # the target also serves the tutorial's shape (v1 with http_api: ours)
    "tool_calls",  # tool calls stream to the client (v1 tool_call messages)
    "stats",  # the server's /stats counters (leaks, queue sizes)
    "restartable",  # the harness starts the server, so it can restart it
    "several_workers",  # the harness runs it as several workers on a shared store (reference)
]
CAPABILITIES: tuple[str, ...] = Capability.__args__  # type: ignore[attr-defined]

Transport = Literal["websocket", "sse", "http"]
FrameFormat = Literal["json", "text", "prefixed"]
Kind = Literal["token", "end", "error", "cancelled", "heartbeat", "ignore"]
Scalar = str | int | float | bool | None

# Values a template may use. Strings are substituted inside text; a template string that is
# exactly "{messages}", "{ui_messages}" or "{max_tokens}" becomes that JSON value (a key whose
# value is None is left out of the body).
PLACEHOLDERS = (
    "prompt",
    "model",
    "messages",
    "ui_messages",
    "max_tokens",
    "client_id",
    "stream_id",
)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def placeholders(template: str) -> Iterator[str]:
    """The placeholder names of a template string (``{{`` and ``}}`` are literal braces)."""
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) is not None:
            yield m.group(1)


def parse_path(path: str) -> tuple[str | int, ...]:
    """``choices[0].delta.content`` -> ("choices", 0, "delta", "content"); ``$``: the frame."""
    if path == "$":
        return ()
    if path.startswith("$"):
        raise ValueError(
            f"bad path {path!r}: paths are dotted keys from the frame, not JSONPath "
            f"(write {path.removeprefix('$.')!r}; '$' alone is the whole frame)"
        )
    parts: list[str | int] = []
    for segment in path.split("."):
        if not segment:
            raise ValueError(f"bad path {path!r}: empty segment")
        pos = 0
        for m in _PATH_PART.finditer(segment):
            if m.start() != pos:
                break
            parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
        if pos != len(segment):
            raise ValueError(f"bad path {path!r}: use dotted keys and [n] indexes")
    return tuple(parts)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_template(value: Any, where: str) -> None:
    if isinstance(value, str):
        for name in placeholders(value):
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} in {where}; known: "
                    + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                )
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_template(item, where)
            _check_template(str(key), where)
    elif isinstance(value, list):
        for item in value:
            _check_template(item, where)


class FrameRule(_Model):
    """One way to read a frame: conditions (all must hold) and what the frame then is.

    Conditions: ``raw`` (the frame's text equals it), ``event`` (SSE event name), ``prefix``
    (the ``X`` of an ``X:json`` line), ``match`` (JSON path -> value, or a list of accepted
    values), ``has`` (a JSON path present and not null). Fields are JSON paths into the frame
    (``$`` is the whole value): ``text`` for a token, ``code``/``message`` for an error, and
    ``index``, ``retryable``, ``finish_reason``, ``usage`` where the protocol has them.
    """

    raw: str | None = None
    event: str | list[str] | None = None
    prefix: str | list[str] | None = None
    match: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    has: str | None = None
    kind: Kind
    text: str | None = None
    index: str | None = None
    code: str | None = None
    message: str | None = None
    retryable: str | None = None
    finish_reason: str | None = None
    usage: str | None = None

    @model_validator(mode="after")
    def _fields(self) -> FrameRule:
        if self.kind == "token" and self.text is None:
            raise ValueError("a token rule needs 'text': the JSON path of the token's text ($)")
        if self.kind != "token" and self.text is not None:
            raise ValueError(f"'text' belongs to token rules, not to a {self.kind} rule")
        fields = ("has", "text", "index", "code", "message", "retryable", "finish_reason", "usage")
        for name in fields:
            value = getattr(self, name)
            if value is not None:
                parse_path(value)
        for key in self.match:
            parse_path(key)
        return self


class Profile(_Model):
    """How to talk to one kind of server; see the module docstring and docs/profiles.md."""

    name: str
    description: str = ""
    transport: Transport
    # "v1": our protocol (docs/protocol.md), read by its own client, not by frame rules.
    protocol: Literal["generic", "v1"] = "generic"
    # Path (and query) appended to the target URL; placeholders are URL-encoded.
    url: str = "/"
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    subprotocol: str | None = None
    # The request for one message: a JSON template (WebSocket frame or HTTP body) or a text one.
    body: Any = None
    text: str | None = None
    # How frames are read: each WebSocket message, SSE event's data, or HTTP line / chunk.
    format: FrameFormat = "json"
    framing: Literal["lines", "chunks"] = "lines"
    frames: list[FrameRule] = Field(default_factory=list)
    # What the connection closing (a WebSocket close 1000, an HTTP body ending) means before
    # an end frame: the end of the answer, or an error. Any other close is an error.
    on_close: Literal["end", "error"] = "error"
    # A silence this long after a token ends the stream (servers that send no end at all).
    idle_end_ms: int | None = Field(default=None, gt=0, le=60_000)
    # A WebSocket message that cancels the running stream (a template), if the server has one.
    cancel_message: Any = None
    # SSE: reconnect with the Last-Event-ID header to continue a stream.
    resume: Literal["last_event_id"] | None = None
    # protocol v1 only: the server also has the HTTP stream API (SSE, polling, blocking).
    http_api: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be a path starting with '/' (got {value!r})")
        _check_template(value, "url")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if any(c in key + item for c in "\r\n\0"):
                raise ValueError(f"header {key!r}: CR, LF and NUL are not allowed")
            _check_template(item, f"header {key}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        _check_template(self.body, "body")
        _check_template(self.text, "text")
        _check_template(self.cancel_message, "cancel_message")
        if self.protocol == "v1":
            if self.transport != "websocket":
                raise ValueError("protocol v1 runs over transport: websocket")
            if self.frames or self.body is not None or self.text is not None:
                raise ValueError("protocol v1 has its own messages: no body, text or frames")
            return self
        if self.http_api:
            raise ValueError("http_api is a protocol v1 feature")
        if not self.frames:
            raise ValueError("give 'frames': the rules that say which frames are tokens")
        if not any(r.kind == "token" for r in self.frames):
            raise ValueError("'frames' has no token rule: no frame could ever be a token")
        if self.body is not None and self.text is not None:
            raise ValueError("give 'body' (JSON) or 'text', not both")
        sends = self.transport == "websocket" or self.method == "POST"
        if sends and self.body is None and self.text is None:
            where = "frame" if self.transport == "websocket" else "POST body"
            raise ValueError(f"give 'body' or 'text': the {where} that carries the prompt")
        if not sends and (self.body is not None or self.text is not None):
            raise ValueError("a GET request has no body: put the prompt in the url")
        if self.format == "prefixed" and self.transport == "websocket":
            raise ValueError("format 'prefixed' is for SSE and HTTP lines")
        if self.cancel_message is not None and self.transport != "websocket":
            raise ValueError("cancel_message is a WebSocket message; HTTP cancels by closing")
        if self.resume is not None and self.transport != "sse":
            raise ValueError("resume: last_event_id is an SSE feature")
        for i, rule in enumerate(self.frames):
            if rule.event is not None and self.transport != "sse":
                raise ValueError(f"frames[{i}].event: only SSE events have names")
            if rule.prefix is not None and self.format != "prefixed":
                raise ValueError(f"frames[{i}].prefix: only for format 'prefixed'")
            if (rule.match or rule.has) and self.format == "text":
                raise ValueError(f"frames[{i}]: format 'text' frames have no JSON to match")
            paths = [rule.text, rule.code, rule.message, rule.index, rule.finish_reason]
            if self.format == "text" and any(p not in (None, "$") for p in paths):
                raise ValueError(f"frames[{i}]: a 'text' frame has no fields: use '$'")
        return self

    @property
    def capabilities(self) -> frozenset[str]:
        """What the profile itself says the server can do (the target adds ``stats`` and
        ``restartable``)."""
        caps: set[str] = set()
        if self.protocol == "v1":
            caps |= {"cancel_message", "resume", "several_streams", "indexes", "error_codes"}
            caps |= {"heartbeat", "pong", "finish_reason", "usage", "resume_token", "v1_protocol"}
            caps.add("tool_calls")
            if self.http_api:
                caps |= {"v1_http", "tutorial_shape"}
        else:
            if self.transport == "sse" or any(r.kind == "heartbeat" for r in self.frames):
                caps.add("heartbeat")
            if self.cancel_message is not None:
                caps.add("cancel_message")
            if self.resume is not None:
                caps.add("resume")
            if any(r.index is not None for r in self.frames):
                caps.add("indexes")
            if any(r.finish_reason is not None for r in self.frames):
                caps.add("finish_reason")
            if any(r.usage is not None for r in self.frames):
                caps.add("usage")
        if "client_id" in set(placeholders(self.url)):
            caps.add("client_id_in_url")
        return frozenset(caps)

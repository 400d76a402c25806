"""WebSocket protocol v1 (``llm-stream.v1``) and the tutorial-shaped protocol, as pure data.

Parsing turns one text frame into one frozen model or raises :class:`ProtocolError` with the
protocol error code; encoding turns a server message into one JSON text frame. No sockets here:
the transports in ``transports/`` drive these functions. The contract is ``docs/protocol.md``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reference_server.errors import ProtocolError
from reference_server.jsoninput import MAX_ID, load_object, message_id
from reference_server.wire import PROTOCOL_V1

__all__ = [
    "PROTOCOL_V1",
    "CancelRequest",
    "Cancelled",
    "ChatRequest",
    "ClientMessage",
    "End",
    "Error",
    "Hello",
    "HttpChatRequest",
    "Limits",
    "Ping",
    "PingRequest",
    "Pong",
    "PongRequest",
    "ResumeRequest",
    "ServerMessage",
    "Start",
    "Token",
    "ToolCall",
    "TutorialRequest",
    "describe_validation_error",
    "encode",
    "parse_client_message",
    "parse_http_chat",
    "parse_tutorial_message",
    "token_frame",
    "token_frame_prefix",
    "tutorial_end",
    "tutorial_error",
    "tutorial_token",
]

Ts = float | int | str | None


class _ClientModel(BaseModel):
    # strict: "5" is not an int and a number is not a string, so wrong types are errors;
    # extra="ignore": unknown fields are ignored (forward compatibility).
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def _check_messages(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for position, turn in enumerate(value):
        if not isinstance(turn.get("role"), str):
            raise ValueError(f"messages[{position}].role must be a string")
    return value


class ChatRequest(_ClientModel):
    type: Literal["chat"] = "chat"
    id: str = Field(min_length=1, max_length=MAX_ID)
    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    resume_token: str | None = None
    after: int = Field(default=-1, ge=-1)

    _messages = field_validator("messages")(_check_messages)


class CancelRequest(_ClientModel):
    type: Literal["cancel"] = "cancel"
    id: str = Field(min_length=1, max_length=MAX_ID)


class ResumeRequest(_ClientModel):
    type: Literal["resume"] = "resume"
    stream_id: str = Field(min_length=1, max_length=MAX_ID)
    after: int = Field(default=-1, ge=-1)
    resume_token: str = Field(min_length=1, max_length=MAX_ID)


class PingRequest(_ClientModel):
    type: Literal["ping"] = "ping"
    ts: Ts = None


class PongRequest(_ClientModel):
    type: Literal["pong"] = "pong"
    ts: Ts = None


ClientMessage = ChatRequest | CancelRequest | ResumeRequest | PingRequest | PongRequest

_CLIENT_TYPES: dict[str, type[_ClientModel]] = {
    "chat": ChatRequest,
    "cancel": CancelRequest,
    "resume": ResumeRequest,
    "ping": PingRequest,
    "pong": PongRequest,
}


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(piece) for piece in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one v1 text frame. Raises :class:`ProtocolError` with the error code to send."""
    data = load_object(text)
    msg_id = message_id(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "field 'type' must be a string", msg_id=msg_id)
    model = _CLIENT_TYPES.get(kind)
    if model is None:
        known = ", ".join(sorted(_CLIENT_TYPES))
        raise ProtocolError(
            "unknown_type", f"unknown message type {kind[:50]!r} (known: {known})", msg_id=msg_id
        )
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(
            "invalid_message", describe_validation_error(exc), msg_id=msg_id
        ) from None
    assert isinstance(
        parsed, ChatRequest | CancelRequest | ResumeRequest | PingRequest | PongRequest
    )
    return parsed


class TutorialRequest(_ClientModel):
    """The tutorial frontend sends ``{"messages": [...], "model": ...}`` (no ``type``)."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | int | None = None
    metadata: dict[str, str] | None = None

    _messages = field_validator("messages")(_check_messages)


class HttpChatRequest(_ClientModel):
    """Body of ``POST /v1/streams`` and ``POST /v1/chat/blocking``."""

    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    # Proves the caller owns the stream ``id`` already names (a create sent again).
    resume_token: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    metadata: dict[str, str] | None = None

    _messages = field_validator("messages")(_check_messages)


def parse_http_chat(body: bytes) -> HttpChatRequest:
    """Parse the body of an HTTP chat; :class:`ProtocolError` carries the error code."""
    data = load_object(body, "body")
    try:
        return HttpChatRequest.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError("invalid_message", describe_validation_error(exc)) from None


def parse_tutorial_message(text: str | bytes) -> TutorialRequest:
    data = load_object(text)
    if "messages" not in data and isinstance(data.get("message"), str):
        # Several tutorial variants send a bare prompt; it means one user turn.
        data = {**data, "messages": [{"role": "user", "content": data["message"]}]}
    try:
        return TutorialRequest.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError("invalid_message", describe_validation_error(exc)) from None


# --- server -> client -------------------------------------------------------------------------


class _ServerModel(BaseModel):
    model_config = ConfigDict(frozen=True)
    # Fields left out of the frame when they are None (all others are always present).
    omit_if_none: ClassVar[frozenset[str]] = frozenset()


class Limits(_ServerModel):
    max_message_bytes: int
    max_streams: int
    messages_per_second: float
    resume_grace_ms: int


class Hello(_ServerModel):
    type: Literal["hello"] = "hello"
    protocol: str = PROTOCOL_V1
    session_id: str
    resume_token: str
    heartbeat_interval_ms: int
    limits: Limits


class Start(_ServerModel):
    type: Literal["start"] = "start"
    id: str
    stream_id: str
    resume_token: str
    replay: bool = False


class Token(_ServerModel):
    type: Literal["token"] = "token"
    id: str
    index: int
    content: str


class ToolCall(_ServerModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    index: int
    call_index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""
    omit_if_none: ClassVar[frozenset[str]] = frozenset({"call_id", "name"})


class End(_ServerModel):
    type: Literal["end"] = "end"
    id: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    tokens: int


class Cancelled(_ServerModel):
    type: Literal["cancelled"] = "cancelled"
    id: str
    index: int


class Error(_ServerModel):
    type: Literal["error"] = "error"
    id: str | None = None
    stream_id: str | None = None
    code: str
    message: str
    retryable: bool = False
    omit_if_none: ClassVar[frozenset[str]] = frozenset({"id", "stream_id"})


class Ping(_ServerModel):
    type: Literal["ping"] = "ping"
    ts: Ts = None


class Pong(_ServerModel):
    type: Literal["pong"] = "pong"
    ts: Ts = None


ServerMessage = Hello | Start | Token | ToolCall | End | Cancelled | Error | Ping | Pong


def encode(message: ServerMessage) -> str:
    """One compact JSON text frame."""
    data = message.model_dump(mode="json")
    for name in message.omit_if_none:
        if data.get(name) is None:
            data.pop(name, None)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def token_frame_prefix(chat_id: str) -> str:
    """The constant start of every ``token`` frame of one stream: encode it once per reader.

    ``prefix + f"{index},\"content\":" + encode_basestring(content) + "}"`` is byte for byte
    ``encode(Token(id=chat_id, index=index, content=content))`` (the test pins that), without a
    pydantic model, ``model_dump`` and a ``json.dumps`` call per token: the relay's hot path.
    """
    return '{"type":"token","id":' + encode_basestring(chat_id) + ',"index":'


def token_frame(prefix: str, index: int, content: str) -> str:
    """One v1 ``token`` frame from :func:`token_frame_prefix`'s prefix."""
    return f'{prefix}{index},"content":{encode_basestring(content)}}}'


def tutorial_token(content: str) -> str:
    # Same text as json.dumps({"type": "token", "content": content}, ensure_ascii=False).
    return '{"type": "token", "content": ' + encode_basestring(content) + "}"


def tutorial_end() -> str:
    return '{"type": "end"}'


def tutorial_error(message: str) -> str:
    return json.dumps({"type": "error", "message": message}, ensure_ascii=False)

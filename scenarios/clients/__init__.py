"""The shared client library: open a stream, record when each token arrived.

This package's top level is pure (sans-I/O): message decoding for WebSocket protocol v1 and
the tutorial-shaped protocol, an incremental SSE parser, and the :class:`StreamRecord` every
transport fills. It imports no asyncio and no socket library, so the gevent-based Locust
users import it too. The asyncio clients (websockets + httpx) live in
:mod:`scenarios.clients.aio` (the reference server's transports) and
:mod:`scenarios.clients.generic` (any server a target profile describes); import them
explicitly.
"""

from __future__ import annotations

from scenarios.clients.errors import ClientConnectError, ClientError, ClientProtocolError
from scenarios.clients.records import (
    ArrivalKind,
    Outcome,
    StreamRecord,
    TokenArrival,
    Transport,
)
from scenarios.clients.sse import SSEComment, SSEEvent, SSEParser, SSERecorder
from scenarios.clients.tutorial import (
    END_MARKER,
    TutorialEnd,
    TutorialError,
    TutorialEvent,
    TutorialRecorder,
    TutorialToken,
    TutorialUnknown,
    decode_tutorial,
    encode_tutorial,
)
from scenarios.clients.v1 import (
    PROTOCOL,
    V1Cancelled,
    V1End,
    V1Error,
    V1Event,
    V1Hello,
    V1Ping,
    V1Pong,
    V1Recorder,
    V1Start,
    V1Token,
    V1ToolCall,
    V1Unknown,
    decode_v1,
    encode_cancel,
    encode_chat,
    encode_ping,
    encode_pong,
    encode_resume,
)

__all__ = [
    "END_MARKER",
    "PROTOCOL",
    "ArrivalKind",
    "ClientConnectError",
    "ClientError",
    "ClientProtocolError",
    "Outcome",
    "SSEComment",
    "SSEEvent",
    "SSEParser",
    "SSERecorder",
    "StreamRecord",
    "TokenArrival",
    "Transport",
    "TutorialEnd",
    "TutorialError",
    "TutorialEvent",
    "TutorialRecorder",
    "TutorialToken",
    "TutorialUnknown",
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
    "decode_tutorial",
    "decode_v1",
    "encode_cancel",
    "encode_chat",
    "encode_ping",
    "encode_pong",
    "encode_resume",
    "encode_tutorial",
]

"""The few ASGI pieces the mock needs: its message types, reading a request body, writing JSON.

On a token's way this is both ends: the request comes in through :func:`read_body` (the chat
handler and the admin API), and every answer that is not a stream leaves through
:func:`send_json` or :func:`send_bytes`. The mock is a plain ASGI callable rather than a
framework app (see ``app.py``), so these replace what a framework would provide.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mockllm.errors import InvalidRequest, MockError

__all__ = [
    "JSON_HEADER",
    "MAX_BODY",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header_text",
    "read_body",
    "send_bytes",
    "send_empty",
    "send_error",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

MAX_BODY = 16 * 1024 * 1024
JSON_HEADER = (b"content-type", b"application/json")


def header_text(value: bytes) -> str:
    """Header bytes (or a query string) as text; a non-UTF-8 byte still reads as something."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def read_body(receive: Receive) -> bytes:
    """The whole request body; ``ConnectionResetError`` if the client left before sending it."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away before sending the body")
        body = message.get("body", b"")
        size += len(body)
        if size > MAX_BODY:
            raise InvalidRequest(f"Request body larger than {MAX_BODY} bytes.")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Any, headers: Headers | None = None) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    await send_bytes(send, status, body, headers)


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    """A complete JSON response: ``body`` is already encoded."""
    out = [JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if headers:
        out += headers
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_empty(send: Send, status: int = 204) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def send_error(send: Send, error: MockError, headers: Headers) -> None:
    """The error as OpenAI answers it: its status and :func:`~mockllm.errors.error_body`."""
    await send_json(send, error.status, error.body(), headers)

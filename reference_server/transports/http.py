"""The HTTP transports over the same generation: SSE, polling, blocking (and cancel).

- ``POST /v1/streams`` creates a stream; ``GET .../events`` reads it as ``text/event-stream``
  (``id:`` = token index, resume by ``Last-Event-ID``; the terminal event's id is the token
  count, so an ``EventSource`` that reconnects after the end gets ``204`` and stops);
- ``GET .../tokens?after=N`` polls; ``DELETE /v1/streams/{id}`` cancels;
- ``POST /v1/chat/blocking`` answers once, when generation ends.

Errors are JSON ``{"error": {"code", "message", "retryable"}}`` with the codes of protocol v1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from mockllm import sse
from reference_server.errors import ProtocolError
from reference_server.limits import check_auth
from reference_server.manager import StreamManager, upstream_body_of
from reference_server.protocol import (
    HttpChatRequest,
    ServerMessage,
    Start,
    Token,
    ToolCall,
    encode,
    parse_http_chat,
)
from reference_server.session import outcome_message
from reference_server.state import StreamState
from reference_server.streams import (
    HEARTBEAT,
    Outcome,
    StreamRecord,
    TokenEvent,
    ToolCallEvent,
)

__all__ = ["router"]

router = APIRouter()

HTTP_SESSION = "http"
_STATUS_OF_CODE = {
    "invalid_json": 400,
    "invalid_message": 422,
    "upstream_timeout": 504,
    "upstream_error": 502,
    "server_shutdown": 503,
    "internal_error": 500,
    "stream_expired": 410,
    "cancelled": 409,
    "store_unavailable": 503,
    "owner_lost": 503,
    "duplicate_chat": 409,
}


def _manager(request: Request) -> StreamManager:
    manager: StreamManager = request.app.state.manager
    return manager


def _error(status: int, code: str, message: str, retryable: bool = False) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "retryable": retryable}}
    return JSONResponse(body, status_code=status)


def _refuse(request: Request) -> JSONResponse | None:
    settings = _manager(request).settings
    expected = settings.auth_token.get_secret_value() if settings.auth_token else None
    reason = check_auth(expected, request.headers, request.query_params)
    if reason is not None:
        return _error(401, "forbidden", reason)
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or its first bytes past ``limit``: never more in memory, however much is sent.

    ``request.body()`` would buffer a body of any size (a declared gigabyte included) before
    the size check could refuse it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


async def _chat_request(request: Request) -> HttpChatRequest | JSONResponse:
    manager = _manager(request)
    raw = await _read_body(request, manager.settings.max_message_bytes)
    if len(raw) > manager.settings.max_message_bytes:
        limit = manager.settings.max_message_bytes
        return _error(413, "message_too_big", f"body larger than {limit} bytes")
    try:
        return parse_http_chat(raw)
    except ProtocolError as exc:
        return _error(_STATUS_OF_CODE.get(exc.code, 422), exc.code, exc.message)


async def _admit_chat(request: Request) -> HttpChatRequest | JSONResponse:
    """Auth, then a valid body, then a server still taking work: the gate of every new chat."""
    refused = _refuse(request)
    if refused is not None:
        return refused
    chat = await _chat_request(request)
    if isinstance(chat, JSONResponse):
        return chat
    if _manager(request).shutting_down:
        return _error(503, "server_shutdown", "server is shutting down", retryable=True)
    return chat


def _body(manager: StreamManager, chat: HttpChatRequest) -> dict[str, Any]:
    return upstream_body_of(chat, manager.settings.default_model)


def _describe_stream(request: Request, record: StreamRecord) -> dict[str, Any]:
    base = f"/v1/streams/{record.stream_id}"
    return {
        "id": record.chat_id,
        "stream_id": record.stream_id,
        "resume_token": record.resume_token,
        "events_url": f"{base}/events?resume_token={record.resume_token}",
        "tokens_url": f"{base}/tokens?resume_token={record.resume_token}",
    }


@router.post("/v1/streams")
async def create_stream(request: Request) -> Response:
    chat = await _admit_chat(request)
    if isinstance(chat, JSONResponse):
        return chat
    manager = _manager(request)
    if chat.id is not None:
        existing = await manager.store.load_chat(HTTP_SESSION, chat.id)
        if existing is not None:
            # Every HTTP client shares one id space, so an id alone proves nothing: the same
            # stream again (never a second generation) only for the token issued with it.
            presented = chat.resume_token or request.headers.get("x-resume-token")
            if not _token_matches(presented, existing.resume_token):
                return _error(
                    409,
                    "id_in_use",
                    f"id {chat.id!r} already names a stream; choose another id (a UUID), or "
                    "send that stream's resume_token to get it again",
                )
            return JSONResponse(_describe_stream(request, existing), status_code=200)
    record = manager.create_stream(
        session_id=HTTP_SESSION,
        chat_id=chat.id or secrets.token_urlsafe(9),
        body=_body(manager, chat),
        idle_limit_s=manager.settings.http_stream_idle_s,
    )
    return JSONResponse(_describe_stream(request, record), status_code=201)


async def _lookup(request: Request, stream_id: str) -> StreamRecord | JSONResponse:
    refused = _refuse(request)
    if refused is not None:
        return refused
    store = _manager(request).store
    record = await store.load_stream(stream_id)
    if record is None:
        if store.expired(stream_id):
            return _error(410, "stream_expired", "the stream is no longer buffered")
        return _error(404, "unknown_stream", "no such stream")
    token = request.headers.get("x-resume-token") or request.query_params.get("resume_token")
    if not _token_matches(token, record.resume_token):
        return _error(403, "forbidden", "missing or wrong resume_token")
    return record


def _token_matches(presented: str | None, expected: str) -> bool:
    # Constant time: how much of a guess matched must not show in the answer's timing.
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def _sse(message: ServerMessage, event_id: int | None = None) -> bytes:
    """The v1 message as one SSE event named after its type (``id:`` = ``event_id``)."""
    return sse.encode(
        encode(message),
        event=message.type,
        id=None if event_id is None else str(event_id),
    )


def _parse_after(value: str | None) -> int | None:
    if value is None or value == "":
        return -1
    try:
        after = int(value)
    except ValueError:
        return None
    return after if after >= -1 else None


@router.get("/v1/streams/{stream_id}/events")
async def stream_events(request: Request, stream_id: str) -> Response:
    found = await _lookup(request, stream_id)
    if isinstance(found, JSONResponse):
        return found
    record = found
    manager = _manager(request)
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    after = _parse_after(raw)
    if after is None:
        return _error(400, "invalid_message", f"Last-Event-ID must be an integer >= -1: {raw!r}")
    if record.terminal and after >= len(record.buffer):
        # The client already saw the terminal event (its id is the token count): stop here,
        # 204 is what makes a browser EventSource stop reconnecting.
        return Response(status_code=204)
    return StreamingResponse(
        _event_stream(manager, record, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    manager: StreamManager, record: StreamRecord, after: int
) -> AsyncIterator[bytes]:
    manager.attach(record)
    manager.sse_readers += 1
    last_sent = after
    try:
        yield sse.retry(manager.settings.sse_retry_ms)
        start = Start(
            id=record.chat_id,
            stream_id=record.stream_id,
            resume_token=record.resume_token,
            replay=after >= 0,
        )
        yield _sse(start)
        heartbeat = manager.settings.heartbeat_interval_s
        async with contextlib.aclosing(record.follow(after, heartbeat_s=heartbeat)) as items:
            async for item in items:
                if item is HEARTBEAT:
                    yield sse.comment("ping")
                elif isinstance(item, TokenEvent):
                    token = Token(id=record.chat_id, index=item.index, content=item.content)
                    yield _sse(token, item.index)
                    last_sent = item.index
                elif isinstance(item, ToolCallEvent):
                    call = ToolCall(
                        id=record.chat_id,
                        index=item.index,
                        call_index=item.call_index,
                        call_id=item.call_id,
                        name=item.name,
                        arguments=item.arguments,
                    )
                    yield _sse(call, item.index)
                    last_sent = item.index
                elif isinstance(item, Outcome):
                    end = outcome_message(record, record.chat_id, item, last_sent)
                    yield _sse(end, len(record.buffer))
    finally:
        manager.sse_readers -= 1
        manager.detach(record)


def _poll_body(record: StreamRecord, after: int, limit: int) -> dict[str, Any]:
    events = record.buffer.after(after)[:limit]
    complete = not events or events[-1].index == record.buffer.last_index
    outcome = record.outcome if complete else None
    error = None
    if outcome is not None and outcome.state is not StreamState.ENDED:
        error = {
            "code": outcome.error_code,
            "message": outcome.error_message,
            "retryable": outcome.retryable,
        }
    return {
        "stream_id": record.stream_id,
        "tokens": [
            {"index": e.index, "content": e.content} for e in events if isinstance(e, TokenEvent)
        ],
        "tool_calls": [
            {
                "index": e.index,
                "call_index": e.call_index,
                "call_id": e.call_id,
                "name": e.name,
                "arguments": e.arguments,
            }
            for e in events
            if isinstance(e, ToolCallEvent)
        ],
        "next_after": events[-1].index if events else after,
        "state": record.state.value if complete else StreamState.STREAMING.value,
        "done": outcome is not None,
        "finish_reason": outcome.finish_reason if outcome else None,
        "usage": outcome.usage if outcome else None,
        "error": error,
    }


@router.get("/v1/streams/{stream_id}/tokens")
async def poll_tokens(request: Request, stream_id: str) -> Response:
    found = await _lookup(request, stream_id)
    if isinstance(found, JSONResponse):
        return found
    after = _parse_after(request.query_params.get("after"))
    if after is None:
        return _error(400, "invalid_message", "after must be an integer >= -1")
    try:
        limit = int(request.query_params.get("limit", "1000"))
    except ValueError:
        limit = 0
    if not 0 < limit <= 10_000:
        return _error(400, "invalid_message", "limit must be an integer in 1..10000")
    _manager(request).touch(found)
    return JSONResponse(_poll_body(found, after, limit))


@router.delete("/v1/streams/{stream_id}")
async def cancel_stream(request: Request, stream_id: str) -> Response:
    found = await _lookup(request, stream_id)
    if isinstance(found, JSONResponse):
        return found
    if not _manager(request).cancel(found):
        state = found.state.value
        return _error(409, "unknown_stream", f"stream is not active (already {state})")
    return JSONResponse({"stream_id": found.stream_id, "cancelled": True})


@router.post("/v1/chat/blocking")
async def blocking_chat(request: Request) -> Response:
    chat = await _admit_chat(request)
    if isinstance(chat, JSONResponse):
        return chat
    manager = _manager(request)
    record = manager.create_stream(
        session_id="http-blocking",
        chat_id=secrets.token_urlsafe(9),
        body=_body(manager, chat),
        idle_limit_s=0,  # nobody can resume a blocking call: stop as soon as its client leaves
    )
    manager.attach(record)
    manager.blocking_waiters += 1
    done = manager.spawn(record.wait_terminal(), "blocking-wait")
    gone = manager.spawn(_wait_disconnect(request), "blocking-disconnect")
    try:
        await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (done, gone):
            task.cancel()
        await asyncio.gather(done, gone, return_exceptions=True)
        manager.blocking_waiters -= 1
        manager.detach(record)  # stops the generation if the client left early
    outcome = record.outcome
    if outcome is None or outcome.state is not StreamState.ENDED:
        code = outcome.error_code if outcome and outcome.error_code else "cancelled"
        message = outcome.error_message if outcome and outcome.error_message else "cancelled"
        retryable = bool(outcome and outcome.retryable)
        return _error(_STATUS_OF_CODE.get(code, 502), code, message, retryable)
    return JSONResponse(
        {
            "stream_id": record.stream_id,
            "content": record.buffer.text(),
            "finish_reason": outcome.finish_reason,
            "usage": outcome.usage,
            "tokens": len(record.buffer),
            "tool_calls": [
                {
                    "index": e.index,
                    "call_index": e.call_index,
                    "call_id": e.call_id,
                    "name": e.name,
                    "arguments": e.arguments,
                }
                for e in record.buffer
                if isinstance(e, ToolCallEvent)
            ],
        }
    )


async def _wait_disconnect(request: Request) -> None:
    # The body is read already, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return

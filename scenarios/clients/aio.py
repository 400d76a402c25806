"""Asyncio clients (websockets + httpx) that fill :class:`StreamRecord` objects.

Thin shells over the pure modules of this package: they read the clock, move bytes and hand
decoded events to the recorders. Every transport of ``docs/protocol.md``:

- :class:`V1Connection`: WebSocket protocol v1, several streams per connection, cancel,
  resume, resend, abrupt ``drop()``, slow reading;
- :class:`TutorialConnection` and :func:`stream_tutorial`: the tutorial-shaped WebSocket;
- :func:`create_stream` + :func:`stream_sse` (with ``Last-Event-ID`` resume),
  :func:`blocking`, :func:`poll`: the HTTP transports.

A client that gives up waiting marks the stream ``timeout`` rather than raising, so a
scenario can report "this stream never ended" as a finding. Failing to connect at all raises
:class:`ClientConnectError`; websockets and httpx exceptions never leak out of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from scenarios.clients.errors import ClientConnectError, ClientProtocolError
from scenarios.clients.records import StreamRecord
from scenarios.clients.sse import SSEParser, SSERecorder
from scenarios.clients.tutorial import (
    END_MARKER,
    TutorialRecorder,
    decode_tutorial,
    encode_tutorial,
)
from scenarios.clients.v1 import (
    PROTOCOL,
    V1Hello,
    V1Ping,
    V1Recorder,
    decode_v1,
    encode_cancel,
    encode_chat,
    encode_ping,
    encode_pong,
    encode_resume,
)

__all__ = [
    "CreatedStream",
    "TutorialConnection",
    "V1Connection",
    "blocking",
    "create_stream",
    "poll",
    "stream_sse",
    "stream_tutorial",
    "ws_url",
]

Messages = Sequence[Mapping[str, Any]]


def ws_url(base_url: str, client_id: str, token: str | None = None) -> str:
    """``/ws/chat/{client_id}`` on a base URL given as http(s):// or ws(s)://."""
    base = base_url.rstrip("/")
    if base.startswith("http"):
        base = "ws" + base.removeprefix("http")
    url = f"{base}/ws/chat/{quote(client_id, safe='')}"
    # Browsers cannot set headers on a WebSocket: the token also travels as ?access_token=.
    return f"{url}?{urlencode({'access_token': token})}" if token is not None else url


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def _open_ws(
    url: str,
    *,
    subprotocol: str | None,
    origin: str | None,
    token: str | None,
    max_queue: int | None,
    ping_interval: float | None,
    open_timeout_s: float,
    headers: Mapping[str, str] | None = None,
    receive_buffer: int | None = None,
) -> ClientConnection:
    try:
        sock = await _small_buffer_socket(url, receive_buffer) if receive_buffer else None
        return await connect(
            url,
            sock=sock,
            subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
            origin=Origin(origin) if origin else None,
            additional_headers=Headers({**(headers or {}), **_auth_headers(token)}),
            max_queue=max_queue,
            # Off by default: client pings would keep an idle proxy connection alive and hide
            # the server's own heartbeat (or its absence), which is what scenarios measure.
            ping_interval=ping_interval,
            open_timeout=open_timeout_s,
            # No compression, so byte-level faults (bandwidth, limit_data) act on real sizes.
            compression=None,
            max_size=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise ClientConnectError(f"{url}: handshake refused with HTTP {status}", status) from None
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise ClientConnectError(f"{url}: cannot connect: {exc!r}") from None


async def _small_buffer_socket(url: str, receive_buffer: int) -> socket.socket:
    """A socket connected to ``url``'s host with a small receive buffer, set before connecting
    (Linux then stops auto-tuning it): a slow reader's data backs up into the server's queue
    after a few KB instead of after the megabytes the kernel would otherwise hold."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _close_code(ws: ClientConnection) -> int:
    # websockets reports no code (None) when the TCP connection died without a close frame.
    code = ws.close_code
    return 1006 if code is None else code


class _Connection:
    """What both WebSocket shells share: reader task, change notification, drop/close."""

    def __init__(self, ws: ClientConnection, read_delay_s: float) -> None:
        self._ws = ws
        self.read_delay_s = read_delay_s
        # After this many frames the reader stops being slow (None: slow to the end).
        self.slow_frames: int | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.protocol_errors: list[str] = []
        self.frames_received = 0
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    def _start_reader(self) -> None:
        self._reader = asyncio.create_task(self._read_loop())

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def _read_loop(self) -> None:
        try:
            async for frame in self._ws:
                t = time.perf_counter()
                self.frames_received += 1
                try:
                    await self._on_frame(frame, t)
                except ClientProtocolError as exc:
                    self.protocol_errors.append(str(exc))
                async with self._changed:
                    self._changed.notify_all()
                if self.read_delay_s > 0:
                    # A slow reader: websockets stops reading the socket once max_queue
                    # frames are buffered, so the server's writes back up into TCP.
                    await asyncio.sleep(self.read_delay_s)
                    if self.slow_frames is not None and self.frames_received >= self.slow_frames:
                        self.read_delay_s = 0.0  # slow for a while, then reading at full speed
        except ConnectionClosed:
            pass
        finally:
            self.close_code = _close_code(self._ws)
            self.close_reason = self._ws.close_reason
            self._on_lost(time.perf_counter(), self.close_code)
            async with self._changed:
                self._changed.notify_all()

    async def _on_frame(self, frame: str | bytes, t: float) -> None:
        raise NotImplementedError

    def _on_lost(self, t: float, close_code: int) -> None:
        raise NotImplementedError

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked after every frame); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: predicate() or self.closed)
        except TimeoutError:
            return False
        return predicate()

    async def wait_closed(self, timeout_s: float) -> bool:
        return await self.wait_until(lambda: self.closed, timeout_s)

    async def _send(self, text: str | bytes) -> None:
        # On a closed socket the reader task records the close; the stream ends "disconnected".
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(text)

    async def send_raw(self, data: str | bytes) -> None:
        """Send any frame as is (bad-input tests)."""
        await self._send(data)

    async def drop(self) -> None:
        """Abrupt close: the TCP connection is aborted, no close frame is sent."""
        transport = self._ws.transport
        transport.abort()
        if self._reader is not None:
            await asyncio.wait({self._reader})

    async def close(self, code: int = 1000, timeout_s: float = 5.0) -> None:
        """Close handshake (with a deadline), then wait for the reader."""
        try:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._ws.close(code)
        finally:
            # Also when the caller is cancelled mid-handshake: never leave the socket open.
            if self._reader is not None and not self._reader.done():
                self._ws.transport.abort()
        if self._reader is not None:
            await asyncio.wait({self._reader})

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class V1Connection(_Connection):
    """One WebSocket v1 connection; streams are keyed by the client-chosen ``id``.

    Open with :meth:`open`. ``records`` maps id -> :class:`StreamRecord`; a record passed
    back in (``chat(record=...)``, ``resume(record=...)``) continues on this connection, so a
    drop-and-resend shows up as one stream with ``reconnects`` > 0.
    """

    def __init__(self, ws: ClientConnection, *, read_delay_s: float, auto_pong: bool) -> None:
        super().__init__(ws, read_delay_s)
        self.recorder = V1Recorder()
        self.auto_pong = auto_pong
        self._ids = itertools.count(1)

    @classmethod
    async def open(
        cls,
        base_url: str,
        client_id: str = "client",
        *,
        origin: str | None = None,
        token: str | None = None,
        subprotocol: str | None = PROTOCOL,
        wait_hello: bool = True,
        hello_timeout_s: float = 10.0,
        read_delay_s: float = 0.0,
        max_queue: int | None = 16,
        auto_pong: bool = True,
        ping_interval: float | None = None,
        open_timeout_s: float = 10.0,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        receive_buffer: int | None = None,
    ) -> V1Connection:
        """Connect to ``base_url``/ws/chat/``client_id`` (or ``url``, a whole ws:// URL) and
        (by default) wait for ``hello``.

        ``read_delay_s`` > 0 makes a slow reader (with ``max_queue`` small, the socket
        backs up). ``auto_pong`` answers the server's app-level pings. ``headers`` go with
        the handshake.
        """
        ws = await _open_ws(
            url or ws_url(base_url, client_id, token),
            subprotocol=subprotocol,
            origin=origin,
            token=token,
            max_queue=max_queue,
            ping_interval=ping_interval,
            open_timeout_s=open_timeout_s,
            headers=headers,
            receive_buffer=receive_buffer,
        )
        conn = cls(ws, read_delay_s=read_delay_s, auto_pong=auto_pong)
        conn._start_reader()
        try:
            hello = not wait_hello or await conn.wait_until(
                lambda: conn.hello is not None, hello_timeout_s
            )
        except BaseException:
            # Cancelled while waiting for hello: the caller never gets the connection to close.
            conn._ws.transport.abort()
            raise
        if not hello:
            code, reason = conn.close_code, conn.close_reason
            await conn.close()
            if code is not None:
                raise ClientConnectError(
                    f"connection closed with code {code} ({reason or 'no reason'}) before hello",
                    close_code=code,
                )
            raise ClientConnectError(f"no hello within {hello_timeout_s} s")
        return conn

    @property
    def subprotocol(self) -> str | None:
        return self._ws.subprotocol

    @property
    def hello(self) -> V1Hello | None:
        return self.recorder.hello

    @property
    def records(self) -> dict[str, StreamRecord]:
        return self.recorder.records

    @property
    def pings(self) -> int:
        return self.recorder.pings

    async def _on_frame(self, frame: str | bytes, t: float) -> None:
        event = decode_v1(frame)
        self.recorder.handle(event, t)
        if isinstance(event, V1Ping) and self.auto_pong:
            await self._send(encode_pong(event.ts))

    def _on_lost(self, t: float, close_code: int) -> None:
        self.recorder.connection_lost(t, close_code)

    def _track(self, id: str | None, record: StreamRecord | None) -> StreamRecord:
        if record is None:
            record = StreamRecord(transport="ws", id=id or f"c{next(self._ids)}")
        elif record.done or record.id not in self.recorder.records:
            record.reopen()
        return self.recorder.track(record)

    async def chat(
        self,
        messages: Messages,
        *,
        id: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        resume_token: str | None = None,
        after: int | None = None,
        record: StreamRecord | None = None,
        **extra: Any,
    ) -> StreamRecord:
        """Send a ``chat``; returns its record at once (filled as frames arrive).

        A resend on a new socket passes the old ``record`` (its id is reused), the old
        session's ``resume_token`` and ``after`` = the last index seen.
        """
        rec = self._track(id if record is None else record.id, record)
        frame = encode_chat(
            rec.id,
            messages,
            model=model,
            max_tokens=max_tokens,
            resume_token=resume_token,
            after=after,
            **extra,
        )
        if rec.sent_at is None:
            rec.sent_at, rec.sent_at_epoch = time.perf_counter(), time.time()
        await self._send(frame)
        return rec

    async def cancel(self, id: str) -> None:
        record = self.recorder.records.get(id)
        if record is not None:
            record.cancelled_at, record.cancelled_at_epoch = time.perf_counter(), time.time()
        await self._send(encode_cancel(id))

    async def resume(
        self,
        stream_id: str,
        after: int,
        resume_token: str,
        *,
        id: str | None = None,
        record: StreamRecord | None = None,
    ) -> StreamRecord:
        """Send ``resume``; the replayed and live tokens go to ``record`` (or a new one).

        The server's frames carry the stream's original chat id: pass ``record`` (or that
        ``id``) so they land in the right place.
        """
        rec = self._track(id or stream_id if record is None else record.id, record)
        rec.stream_id = stream_id
        if rec.sent_at is None:
            rec.sent_at, rec.sent_at_epoch = time.perf_counter(), time.time()
        await self._send(encode_resume(stream_id, after, resume_token))
        return rec

    async def ping(self, ts: Any = None) -> None:
        await self._send(encode_ping(ts))

    async def wait(self, id: str, timeout_s: float) -> StreamRecord:
        """Wait for the stream to end; on timeout it is marked ``timeout`` (not raised)."""
        record = self.recorder.records[id]
        if not await self.wait_until(lambda: record.done, timeout_s):
            record.finish("timeout", time.perf_counter())
        return record

    async def wait_tokens(self, id: str, count: int, timeout_s: float) -> bool:
        """Wait until the stream has ``count`` arrivals (or ended); True if it has them."""
        record = self.recorder.records[id]
        await self.wait_until(lambda: len(record.arrivals) >= count or record.done, timeout_s)
        return len(record.arrivals) >= count

    async def stream(
        self, messages: Messages, *, timeout_s: float = 30.0, **chat_args: Any
    ) -> StreamRecord:
        """``chat`` then ``wait``: one whole stream."""
        record = await self.chat(messages, **chat_args)
        return await self.wait(record.id, timeout_s)


class TutorialConnection(_Connection):
    """The tutorial-shaped WebSocket: no ids, each token belongs to the last message sent."""

    def __init__(self, ws: ClientConnection, *, read_delay_s: float, end_marker: str | None):
        super().__init__(ws, read_delay_s)
        self.recorder = TutorialRecorder(end_marker)
        self._ids = itertools.count(1)

    @classmethod
    async def open(
        cls,
        base_url: str,
        client_id: str = "client",
        *,
        end_marker: str | None = END_MARKER,
        origin: str | None = None,
        token: str | None = None,
        read_delay_s: float = 0.0,
        max_queue: int | None = 16,
        ping_interval: float | None = None,
        open_timeout_s: float = 10.0,
    ) -> TutorialConnection:
        ws = await _open_ws(
            ws_url(base_url, client_id, token),
            subprotocol=None,
            origin=origin,
            token=token,
            max_queue=max_queue,
            ping_interval=ping_interval,
            open_timeout_s=open_timeout_s,
        )
        conn = cls(ws, read_delay_s=read_delay_s, end_marker=end_marker)
        conn._start_reader()
        return conn

    @property
    def records(self) -> list[StreamRecord]:
        return self.recorder.records

    async def _on_frame(self, frame: str | bytes, t: float) -> None:
        self.recorder.handle(decode_tutorial(frame), t)

    def _on_lost(self, t: float, close_code: int) -> None:
        self.recorder.connection_lost(t, close_code)

    async def send(
        self, messages: Messages, *, model: str | None = None, **extra: Any
    ) -> StreamRecord:
        now = time.perf_counter()
        record = StreamRecord(
            transport="tutorial", id=f"t{next(self._ids)}", sent_at=now, sent_at_epoch=time.time()
        )
        self.recorder.begin(record, now)
        await self._send(encode_tutorial(messages, model=model, **extra))
        return record

    async def wait(self, record: StreamRecord, timeout_s: float) -> StreamRecord:
        if not await self.wait_until(lambda: record.done, timeout_s):
            record.finish("timeout", time.perf_counter())
        return record


async def stream_tutorial(
    base_url: str,
    messages: Messages,
    *,
    client_id: str = "client",
    model: str | None = None,
    end_marker: str | None = END_MARKER,
    timeout_s: float = 30.0,
    origin: str | None = None,
) -> StreamRecord:
    """Open a tutorial-shaped socket, send one message, wait for its end, close."""
    conn = await TutorialConnection.open(base_url, client_id, end_marker=end_marker, origin=origin)
    async with conn:
        record = await conn.send(messages, model=model)
        return await conn.wait(record, timeout_s)


# --- HTTP transports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedStream:
    """Answer of ``POST /v1/streams``; URLs are absolute."""

    stream_id: str
    resume_token: str
    events_url: str
    tokens_url: str
    sent_at: float
    sent_at_epoch: float


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, bool | None]:
    """(code, message, retryable) from an error body of any of the usual shapes."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200] or None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return None, str(body)[:200], None
    code, message = body.get("code"), body.get("message", body.get("detail"))
    retryable = body.get("retryable")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else (json.dumps(message) if message else None),
        retryable if isinstance(retryable, bool) else None,
    )


def _http_error(record: StreamRecord, response: httpx.Response, t: float) -> StreamRecord:
    record.http_status = response.status_code
    code, message, retryable = _error_fields(response)
    record.error_code = code or f"http_{response.status_code}"
    record.error_message = message
    record.error_retryable = retryable
    record.finish("error", t)
    return record


@contextlib.asynccontextmanager
async def _client(client: httpx.AsyncClient | None, timeout_s: float) -> Any:
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s)) as own:
        yield own


def _request_body(
    messages: Messages, model: str | None, max_tokens: int | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": list(messages)}
    if model is not None:
        body["model"] = model
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


async def create_stream(
    base_url: str,
    messages: Messages,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    id: str | None = None,
    token: str | None = None,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 10.0,
    **extra: Any,
) -> CreatedStream:
    """``POST /v1/streams``; raises :class:`ClientConnectError` unless it answers 201/200."""
    body = _request_body(messages, model, max_tokens, extra)
    if id is not None:
        body["id"] = id
    url = f"{base_url.rstrip('/')}/v1/streams"
    sent_at, sent_at_epoch = time.perf_counter(), time.time()
    try:
        async with _client(client, timeout_s) as http:
            response = await http.post(url, json=body, headers=_auth_headers(token))
    except httpx.HTTPError as exc:
        raise ClientConnectError(f"POST {url}: {exc!r}") from None
    if response.status_code not in (200, 201):
        code, message, _ = _error_fields(response)
        raise ClientConnectError(
            f"POST {url}: HTTP {response.status_code} {code or ''} {message or ''}".strip(),
            response.status_code,
        )
    data = response.json()
    stream_id = data["stream_id"]
    base = base_url.rstrip("/") + "/"
    return CreatedStream(
        stream_id=stream_id,
        resume_token=data.get("resume_token", ""),
        events_url=urljoin(base, data.get("events_url") or f"v1/streams/{stream_id}/events"),
        tokens_url=urljoin(base, data.get("tokens_url") or f"v1/streams/{stream_id}/tokens"),
        sent_at=sent_at,
        sent_at_epoch=sent_at_epoch,
    )


async def _create_for(
    caller: str,
    base_url: str,
    messages: Messages | None,
    *,
    model: str | None,
    max_tokens: int | None,
    token: str | None,
    client: httpx.AsyncClient | None,
) -> CreatedStream:
    """Create the stream a reader was not given (it then needs the messages)."""
    if messages is None:
        raise ValueError(f"{caller} needs messages or an existing stream")
    return await create_stream(
        base_url, messages, model=model, max_tokens=max_tokens, token=token, client=client
    )


def _record_for(stream: CreatedStream, transport: Literal["sse", "polling"]) -> StreamRecord:
    """A fresh record for reading ``stream`` over ``transport``."""
    return StreamRecord(
        transport=transport,
        id=stream.stream_id,
        stream_id=stream.stream_id,
        sent_at=stream.sent_at,
        sent_at_epoch=stream.sent_at_epoch,
        resume_token=stream.resume_token,
    )


def _lost(record: StreamRecord, exc: httpx.HTTPError) -> StreamRecord:
    """The HTTP connection failed mid-stream: the record ends ``disconnected``."""
    record.error_message = repr(exc)
    record.finish("disconnected", time.perf_counter())
    return record


async def stream_sse(
    base_url: str,
    messages: Messages | None = None,
    *,
    stream: CreatedStream | None = None,
    record: StreamRecord | None = None,
    last_event_id: str | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    stop_after_tokens: int | None = None,
    read_delay_s: float = 0.0,
    timeout_s: float = 30.0,
    token: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> StreamRecord:
    """Read a stream's SSE events into a record.

    Without ``stream`` it first creates one from ``messages``. ``stop_after_tokens`` closes
    the connection after that many new tokens (outcome ``disconnected``); call again with
    the same ``stream`` and ``record`` and ``last_event_id=record.last_event_id`` to resume.
    ``timeout_s`` bounds the whole read; an EOF without an end event is ``disconnected``.
    """
    if stream is None:
        stream = await _create_for(
            "stream_sse",
            base_url,
            messages,
            model=model,
            max_tokens=max_tokens,
            token=token,
            client=client,
        )
    if record is None:
        record = _record_for(stream, "sse")
    elif record.done:
        record.reopen()
    headers = {"Accept": "text/event-stream", "X-Resume-Token": stream.resume_token}
    headers.update(_auth_headers(token))
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    parser, recorder = SSEParser(), SSERecorder(record)
    start_count = len(record.arrivals)
    try:
        async with (
            asyncio.timeout(timeout_s),
            _client(client, timeout_s) as http,
            http.stream("GET", stream.events_url, headers=headers) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                return _http_error(record, response, time.perf_counter())
            async for chunk in response.aiter_bytes():
                t = time.perf_counter()
                for item in parser.feed(chunk):
                    recorder.handle(item, t)
                if record.done:
                    return record
                if (
                    stop_after_tokens is not None
                    and len(record.arrivals) - start_count >= stop_after_tokens
                ):
                    record.finish("disconnected", t)
                    return record
                if read_delay_s > 0:
                    await asyncio.sleep(read_delay_s)
            for item in parser.feed_eof():
                recorder.handle(item, time.perf_counter())
        record.finish("disconnected", time.perf_counter())
    except TimeoutError:
        record.finish("timeout", time.perf_counter())
    except httpx.HTTPError as exc:
        _lost(record, exc)
    return record


async def blocking(
    base_url: str,
    messages: Messages,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
    client: httpx.AsyncClient | None = None,
    **extra: Any,
) -> StreamRecord:
    """``POST /v1/chat/blocking``: every token "arrives" when the whole answer does."""
    body = _request_body(messages, model, max_tokens, extra)
    record = StreamRecord(
        transport="blocking", id="blocking", sent_at=time.perf_counter(), sent_at_epoch=time.time()
    )
    try:
        async with _client(client, timeout_s) as http:
            response = await http.post(
                f"{base_url.rstrip('/')}/v1/chat/blocking",
                json=body,
                headers=_auth_headers(token),
                timeout=timeout_s,
            )
    except httpx.TimeoutException:
        record.finish("timeout", time.perf_counter())
        return record
    except httpx.HTTPError as exc:
        return _lost(record, exc)
    t = time.perf_counter()
    record.http_status = response.status_code
    if response.status_code != 200:
        return _http_error(record, response, t)
    data = response.json()
    tokens = data.get("tokens")
    if isinstance(tokens, list):
        for i, tok in enumerate(tokens):
            if isinstance(tok, dict):
                record.add(int(tok.get("index", i)), str(tok.get("content", "")), t)
            else:
                record.add(i, str(tok), t)
    else:
        # only a count (or nothing): the whole answer is one arrival
        record.add(0, str(data.get("content") or ""), t)
    record.finish_reason = data.get("finish_reason")
    record.usage = data.get("usage")
    record.finish("completed", t)
    return record


async def poll(
    base_url: str,
    messages: Messages | None = None,
    *,
    interval_s: float = 0.1,
    stream: CreatedStream | None = None,
    record: StreamRecord | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    timeout_s: float = 60.0,
    token: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> StreamRecord:
    """Create a stream (unless given) and poll ``/tokens?after=N`` every ``interval_s``.

    Each token's arrival time is the time of the poll that returned it, which is the
    latency cost of polling the scenarios measure.
    """
    if stream is None:
        stream = await _create_for(
            "poll",
            base_url,
            messages,
            model=model,
            max_tokens=max_tokens,
            token=token,
            client=client,
        )
    if record is None:
        record = _record_for(stream, "polling")
    headers = {"X-Resume-Token": stream.resume_token, **_auth_headers(token)}
    after = max((a.index for a in record.arrivals), default=-1)
    try:
        async with asyncio.timeout(timeout_s), _client(client, timeout_s) as http:
            while True:
                # merge, not replace: the URL may carry ?resume_token= already
                url = httpx.URL(stream.tokens_url).copy_merge_params({"after": after})
                response = await http.get(url, headers=headers)
                t = time.perf_counter()
                if response.status_code != 200:
                    return _http_error(record, response, t)
                data = response.json()
                items = [(tok, "token") for tok in data.get("tokens") or []]
                items += [(call, "tool_call") for call in data.get("tool_calls") or []]
                for item, kind in sorted(items, key=lambda pair: int(pair[0]["index"])):
                    if kind == "token":
                        record.add(int(item["index"]), str(item.get("content", "")), t)
                    else:
                        record.add(
                            int(item["index"]), str(item.get("arguments", "")), t, "tool_call"
                        )
                        record.tool_calls.append(item)
                    after = max(after, int(item["index"]))
                if isinstance(data.get("next_after"), int):
                    after = max(after, data["next_after"])
                if data.get("done"):
                    error = data.get("error")
                    if error:
                        if isinstance(error, dict):
                            record.error_code = error.get("code")
                            record.error_message = error.get("message")
                            record.error_retryable = error.get("retryable")
                        else:
                            record.error_code = str(error)
                        record.finish("error", t)
                    else:
                        record.finish_reason = data.get("finish_reason")
                        record.usage = data.get("usage")
                        record.finish(
                            "cancelled"
                            if data.get("finish_reason") == "cancelled"
                            else "completed",
                            t,
                        )
                    return record
                await asyncio.sleep(interval_s)
    except TimeoutError:
        record.finish("timeout", time.perf_counter())
    except httpx.HTTPError as exc:
        _lost(record, exc)
    return record

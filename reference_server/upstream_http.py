"""The provider's HTTP/1.1 connections: one streamed POST at a time each, kept alive between
requests, parsed by httptools (llhttp, in C) inside ``data_received``.

Why not httpx for this: with hundreds of streams open, every streamed token went through
httpx's response iterator, httpcore's connection and h11's parser before our SSE parsing saw
it. At 500 concurrent streams that stack was half of the reference server's CPU, and the queue
it builds on the event loop is what clients see as added time to first token
(docs/reference_server.md, "Upstream connections"). The server sends one request shape only,
so this module does only that: a prebuilt request head, a body parsed as it arrives, and the
connection back to the pool when the body is complete.

- **Pool**: idle connections are a stack (the most recently used first: the least likely to
  have been closed by the server), checked when taken; at most ``max_connections`` requests in
  flight (a request beyond that waits up to the connect timeout); idle connections older than
  ``keepalive_s`` are closed rather than reused.
- **Timeouts**: connect (TCP and TLS handshake) and read (no byte for ``read_timeout_s`` while
  the reader waits, the response head included). One timer per connection, re-armed lazily,
  not one per token.
- **Errors** are :class:`UpstreamError` (``ConnectError``, ``ReadError``, ``ProtocolError`` in
  the message) and :class:`UpstreamTimeout`; nothing else leaves this module.
- A request on a reused connection that the server closed before answering (its keep-alive
  timeout racing our reuse) is sent again once on a new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httptools

from reference_server.errors import UpstreamError, UpstreamTimeout

__all__ = ["ConnectionPool", "Endpoint", "Exchange"]

# Stop reading from the socket above this many buffered body bytes (a reader that fell behind).
_HIGH_WATER = 256 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``scheme://host:port`` and the request target."""

    scheme: str
    host: str
    port: int
    target: str

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL must be http:// or https:// with a host: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port, target)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _connection_error(kind: str, detail: object) -> UpstreamError:
    return UpstreamError(f"upstream connection failed: {kind}: {detail}")


class Exchange(asyncio.Protocol):
    """One connection, and the state of the request it carries (one at a time).

    The protocol callbacks (``data_received`` feeding the parser, whose callbacks fill the
    body buffer or hand the bytes to a sink) run in the event loop's I/O phase. A reader either
    pulls (``read``: waits only when the buffer is empty) or pushes (``stream_into``: the sink
    is called from ``data_received``; the reader wakes once, at the end).
    """

    def __init__(self, read_timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._read_timeout_s = read_timeout_s
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._busy = False
        self._reset()
        self._waiter: asyncio.Future[None] | None = None
        self._wait_started: float | None = None
        self._last_data = 0.0  # when bytes last arrived (the read timeout counts from here)
        self._timer: asyncio.TimerHandle | None = None

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_complete = False
        self.complete = False
        self._keep_alive = False
        self._framed = False  # Content-Length or chunked: a close before the end is an error
        self.answered = False  # any byte of the response arrived
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._paused = False
        self._error: UpstreamError | None = None
        # stream_into: body bytes go to the sink from data_received, not to the buffer.
        self._sink: Callable[[bytes], bool] | None = None
        self._sink_done = False  # the sink returned False (or raised)
        self._sink_error: Exception | None = None

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._busy or self.complete:
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        self.answered = True
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_connection_error("ProtocolError", f"malformed HTTP response: {exc}"))
            return
        if self._sink is not None and not self.complete:
            return  # the sink took the bytes: nobody to wake
        if self._size > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended()
        return False  # close the transport: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None and not self.complete:
            self._error = _connection_error("ReadError", exc)
        self._ended()

    # --- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return  # a second response in the same read: see on_message_complete
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if self.complete:
            self._keep_alive = False
            return
        self.status = self._parser.get_status_code()
        self.head_complete = True
        headers = self.headers
        self._framed = "content-length" in headers or "chunked" in headers.get(
            "transfer-encoding", ""
        )

    def on_body(self, body: bytes) -> None:
        if not body or self.complete:
            return
        sink = self._sink
        if sink is None:
            self._chunks.append(body)
            self._size += len(body)
            return
        try:
            wants_more = sink(body)
        except Exception as exc:  # the sink's own failure: stream_into raises it
            self._sink_error = exc
            wants_more = False
        if not wants_more:
            self._sink = None  # later bytes are buffered; wake the reader now
            self._sink_done = True
            self._wake()

    def on_message_complete(self) -> None:
        if self.complete:
            self._keep_alive = False  # more than one response to one request: not reusable
            return
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()

    # --- state
    def _ended(self) -> None:
        """The server closed: the end of a body without framing, else an error if mid-request."""
        self.closed = True
        if self._busy and not self.complete and self._error is None:
            if self.head_complete and not self._framed:
                self.complete = True  # the body ran until the close (no length, not chunked)
            else:
                detail = "mid-body" if self.head_complete else "before the response"
                self._error = _connection_error("ReadError", f"the upstream closed {detail}")
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self.closed and self._error is None

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    # --- reading
    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._wait_started = started = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(started + self._read_timeout_s, self._check_timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            self._wait_started = None

    def _check_timeout(self) -> None:
        self._timer = None
        started = self._wait_started
        if started is None:
            return  # not waiting: the next wait arms the timer again
        # A reader that stream_into keeps waiting while bytes flow: count from the last ones.
        since = max(started, self._last_data)
        if self._loop.time() - since >= self._read_timeout_s:
            self._fail(
                UpstreamTimeout(f"upstream read timeout: no data for {self._read_timeout_s:g} s")
            )
        else:
            self._timer = self._loop.call_at(since + self._read_timeout_s, self._check_timeout)

    async def wait_head(self) -> None:
        while not self.head_complete:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """Body bytes that arrived (all of them, joined), or ``b""`` at the end of the body."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def stream_into(self, sink: Callable[[bytes], bool]) -> None:
        """Hand body bytes to ``sink`` as they arrive until it returns False or the body ends.

        What is already buffered goes first; then the sink is called from ``data_received``,
        so the bytes are handled in the event loop's I/O callback, without waking this task
        (it wakes once, at the end). An exception from the sink is raised here.
        """
        while self._chunks:
            if not sink(await self.read()):
                return
        self._sink, self._sink_done = sink, False
        try:
            while not self._sink_done and not self.complete and self._error is None:
                await self._wait()
        finally:
            self._sink = None
        if self._sink_error is not None:
            error, self._sink_error = self._sink_error, None
            raise error
        if not self._sink_done and not self.complete and self._error is not None:
            raise self._error

    # --- writing
    def start(self, request: bytes) -> None:
        self._reset()
        self._busy = True
        assert self._transport is not None
        self._transport.write(request)

    def finish(self) -> None:
        self._busy = False
        self._chunks.clear()
        self._size = 0
        if self._paused and self._transport is not None:
            # A complete body left unread above the high-water mark (a large error body):
            # the next request on this connection must be able to read its answer.
            self._paused = False
            self._transport.resume_reading()
        self.idle_since = self._loop.time()


class ConnectionPool:
    """Kept-alive connections to one :class:`Endpoint`, for one request shape: a JSON POST."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        headers: dict[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
        keepalive_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._keepalive_s = keepalive_s
        self._max_connections = max_connections
        if endpoint.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context if endpoint.scheme == "https" else None
        for name, value in headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0") or not name.strip():
                raise ValueError(f"invalid HTTP header for the upstream: {name!r}")
        # The request head but its Content-Length: the same for every request.
        lines = [
            f"POST {endpoint.target} HTTP/1.1",
            f"Host: {endpoint.host_header}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: collections.deque[Exchange] = collections.deque()
        self._slots: asyncio.Semaphore | None = None  # made in the running loop
        self.active = 0
        self.opened = 0  # connections created (for tests and stats)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def _connect(self) -> Exchange:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, exchange = await loop.create_connection(
                    lambda: Exchange(self._read_timeout_s),
                    ep.host,
                    ep.port,
                    ssl=self._ssl,
                    server_hostname=ep.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream connect timeout: {ep.host}:{ep.port} after {self._connect_timeout_s:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise _connection_error("ConnectError", exc) from None
        self.opened += 1
        return exchange

    def _take_idle(self) -> Exchange | None:
        now = asyncio.get_running_loop().time()
        idle = self._idle
        while idle:
            exchange = idle.pop()
            if not exchange.closed and now - exchange.idle_since < self._keepalive_s:
                return exchange
            exchange.close()
        return None

    @contextlib.asynccontextmanager
    async def post(self, body: bytes) -> AsyncIterator[Exchange]:
        """Send the POST; yield the exchange once the response head is in.

        On exit the connection goes back to the pool if the body was read to its end and the
        server keeps it alive, else it is closed (a cancelled stream closes its request).
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamTimeout(
                    f"upstream pool timeout: {self._max_connections} requests in flight"
                ) from None
        else:
            await self._slots.acquire()  # free: returns without suspending
        self.active += 1
        request = self._head + b"%d\r\n\r\n" % len(body) + body
        exchange: Exchange | None = None
        try:
            exchange = self._take_idle()
            reused = exchange is not None
            if exchange is None:
                exchange = await self._connect()
            exchange.start(request)
            try:
                await exchange.wait_head()
            except UpstreamError:
                # A reused connection closed before any answer: the server's keep-alive
                # timeout raced our reuse. Once more on a new connection.
                if not reused or exchange.answered or not exchange.closed:
                    raise
                exchange.close()
                exchange = await self._connect()
                exchange.start(request)
                await exchange.wait_head()
            yield exchange
        finally:
            self.active -= 1
            self._slots.release()
            if exchange is not None:
                self._release(exchange)

    def _release(self, exchange: Exchange) -> None:
        reusable = exchange.reusable()
        exchange.finish()
        if reusable and self.active + len(self._idle) < self._max_connections:
            self._idle.append(exchange)
        else:
            exchange.close()
        idle = self._idle
        # The oldest idle connections expire first: drop those that did, O(1) per release.
        now = asyncio.get_running_loop().time()
        while idle and now - idle[0].idle_since >= self._keepalive_s:
            idle.popleft().close()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

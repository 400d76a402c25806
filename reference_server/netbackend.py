"""An asyncio network backend for httpcore: the upstream connections without anyio per read.

httpx's default backend goes through anyio, which on every ``read`` enters a cancel scope with
a deadline, asks sniffio which event loop runs, and resumes then pauses the transport's reading
(two ``epoll_ctl`` calls): per streamed token, that cost more server CPU than parsing the chunk.
Here each connection is a plain :class:`asyncio.Protocol` that keeps reading into a buffer
(paused only above a high-water mark); ``read`` returns buffered bytes without suspending and
arms a read-timeout timer only when it has to wait. Timeouts and errors are httpcore's own
exceptions, so httpx maps them exactly as with its default backend (``UpstreamClient`` turns
them into ``upstream_timeout`` / ``upstream_error``).

:func:`asyncio_transport` is an ``httpx.AsyncHTTPTransport`` whose connection pool uses this
backend (httpx has no public parameter for a network backend: the pool is rebuilt with the
same limits). TLS goes through ``loop.start_tls``.
"""

# The ``timeout`` parameters are httpcore's backend interface, not our choice.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import httpcore
import httpx

__all__ = ["AsyncioBackend", "ReusePool", "asyncio_transport"]

# Stop reading from the socket above this many buffered bytes (httpcore reads 64 KiB at a time).
_HIGH_WATER = 256 * 1024


class _Connection(asyncio.Protocol):
    """Bytes in a deque; one waiter at a time (httpcore reads one connection from one task)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport, hence the cast).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake()
        self.writing_paused = False
        self._wake_drain()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drain()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what is buffered (several chunks joined: fewer parser calls)."""
        chunks = self.chunks
        data = chunks.popleft()
        if chunks and len(data) < max_bytes:
            parts = [data]
            total = len(data)
            while chunks and total + len(chunks[0]) <= max_bytes:
                part = chunks.popleft()
                parts.append(part)
                total += len(part)
            data = b"".join(parts)
        if len(data) > max_bytes:
            chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self.size -= len(data)
        if self.reading_paused and self.size <= _HIGH_WATER // 4 and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(
    connection: _Connection, attribute: str, timeout: float | None
) -> None:  # fmt: skip
    """Wait until the protocol wakes ``attribute``'s future; TimeoutError after ``timeout``."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    setattr(connection, attribute, waiter)
    timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
    try:
        await waiter
    finally:
        setattr(connection, attribute, None)
        if timer is not None:
            timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        self._conn = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        conn = self._conn
        if not conn.chunks:
            if conn.error is not None:
                raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__)
            if conn.eof:
                return b""
            try:
                await _wait(conn, "waiter", timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("no data from the upstream in time") from None
            if not conn.chunks:
                if conn.error is not None:
                    raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__)
                return b""  # EOF
        return conn.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        conn = self._conn
        transport = conn.transport
        if transport is None or transport.is_closing() or conn.error is not None:
            raise httpcore.WriteError("connection closed")
        transport.write(buffer)
        if conn.writing_paused:
            try:
                await _wait(conn, "drain_waiter", timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("upstream did not take the request in time") from None
            if conn.error is not None or transport.is_closing():
                raise httpcore.WriteError("connection closed")

    async def aclose(self) -> None:
        if self._conn.transport is not None:
            self._conn.transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        conn = self._conn
        assert conn.transport is not None
        loop = asyncio.get_running_loop()
        try:
            tls = await asyncio.wait_for(
                loop.start_tls(conn.transport, conn, ssl_context, server_hostname=server_hostname),
                timeout,
            )
        except TimeoutError:
            conn.transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            conn.transport.close()
            raise httpcore.ConnectError(str(exc)) from None
        if tls is None:
            raise httpcore.ConnectError("TLS handshake failed: connection closed")
        conn.transport = tls
        return AsyncioStream(conn)

    def get_extra_info(self, info: str) -> Any:
        conn = self._conn
        transport = conn.transport
        if info == "is_readable":
            # httpcore asks this of idle pooled connections: data or EOF means the server
            # closed (or broke) it, so it must not be reused.
            return bool(conn.chunks) or conn.eof or transport is None or transport.is_closing()
        if transport is None:
            return None
        name = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }.get(info)
        return None if name is None else transport.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, host, port, local_addr=local), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(conn)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_unix_connection(_Connection, path), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connect to {path} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return AsyncioStream(conn)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _PooledStream:
    """A response body that hands its connection back to the pool when closed."""

    def __init__(
        self, stream: Any, pool: ReusePool, connection: httpcore.AsyncHTTPConnection
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection: httpcore.AsyncHTTPConnection | None = connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await self._stream.aclose()
        finally:
            await self._pool.release(connection)


class ReusePool(httpcore.AsyncConnectionInterface):
    """HTTP/1.1 connections to the upstream, reused newest-first, in O(1) per request.

    Replaces httpcore 1.0's ``AsyncConnectionPool`` for the upstream: that pool walks every
    connection several times on each request and each response close, and for each idle one
    counts all connections again (quadratic), so with hundreds of streams open the walk cost
    more than the reuse saved and streams opened a new TCP connection each. Here idle
    connections are a stack (the most recently used first: the least likely to have been
    closed by the server), active ones are only counted, and an idle connection is checked
    (``has_expired``: keep-alive expiry, or data/EOF from the server) when it is taken.

    Same limits as httpx's: at most ``max_connections`` requests in flight (a request beyond
    that waits up to the ``pool`` timeout, then ``PoolTimeout``), at most
    ``max_keepalive_connections`` idle, each idle for at most ``keepalive_expiry`` seconds.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
        network_backend: httpcore.AsyncNetworkBackend,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections if max_connections is not None else 2**31
        keep = max_keepalive_connections
        self._max_idle = self._max_connections if keep is None else keep
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend
        self._idle: collections.deque[httpcore.AsyncHTTPConnection] = collections.deque()
        self._slots: asyncio.Semaphore | None = None  # made in the running loop
        self.active = 0
        self.opened = 0  # connections created (for tests and /stats-style checks)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _take_idle(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if (
                connection.can_handle_request(origin)
                and connection.is_idle()
                and not connection.has_expired()
            ):
                return connection
            self._close_soon(connection)
        return None

    def _close_soon(self, connection: httpcore.AsyncHTTPConnection) -> None:
        # An idle HTTP/1.1 connection's close only closes its socket; no I/O is awaited.
        task = asyncio.ensure_future(connection.aclose())
        task.add_done_callback(_ignore_result)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        if self._slots.locked():
            timeouts = request.extensions.get("timeout", {})
            try:
                await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
            except TimeoutError:
                raise httpcore.PoolTimeout("no upstream connection free in time") from None
        else:
            await self._slots.acquire()  # free: returns without suspending
        self.active += 1
        try:
            origin = request.url.origin
            while True:
                connection = self._take_idle(origin)
                if connection is None:
                    while self._idle and self.active + len(self._idle) > self._max_connections:
                        self._close_soon(self._idle.popleft())
                    connection = httpcore.AsyncHTTPConnection(
                        origin=origin,
                        ssl_context=self._ssl_context,
                        keepalive_expiry=self._keepalive_expiry,
                        network_backend=self._backend,
                    )
                    self.opened += 1
                try:
                    response = await connection.handle_async_request(request)
                except httpcore.ConnectionNotAvailable:
                    continue  # taken by a race with its close: another connection
                except BaseException:
                    await connection.aclose()
                    raise
                break
        except BaseException:
            self.active -= 1
            self._slots.release()
            raise
        response.stream = _PooledStream(response.stream, self, connection)
        return response

    async def release(self, connection: httpcore.AsyncHTTPConnection) -> None:
        """The response is closed: keep the connection if it is reusable, else close it."""
        self.active -= 1
        assert self._slots is not None
        self._slots.release()
        idle = self._idle
        # The oldest idle connections expire first: drop those that did, O(1) per release.
        while idle and idle[0].has_expired():
            self._close_soon(idle.popleft())
        if connection.is_idle() and len(idle) < self._max_idle:
            idle.append(connection)
        else:
            await connection.aclose()

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().aclose()

    async def __aenter__(self) -> ReusePool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed close of an unused connection is not an error


def asyncio_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's HTTP transport (TLS verification as httpx's default) on :class:`AsyncioBackend`,
    with :class:`ReusePool` for its connections."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx 0.28 offers no network_backend or pool parameter: same limits, our pool and backend.
    transport._pool = ReusePool(  # type: ignore[assignment]
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport

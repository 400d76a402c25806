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
from collections.abc import Iterable
from typing import Any, cast

import httpcore
import httpx

__all__ = ["AsyncioBackend", "asyncio_transport"]

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


def asyncio_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's HTTP transport (TLS verification as httpx's default) on :class:`AsyncioBackend`."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx 0.28 offers no network_backend parameter; same pool settings, our backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport

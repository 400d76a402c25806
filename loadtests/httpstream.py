"""A streamed HTTP/1.1 response read chunk by chunk, each chunk with its kernel arrival time.

The streaming HTTP users (OpenAI-style SSE straight from a provider, the reference server's SSE)
need what the WebSocket users have: every token stamped when it reached the socket, not when a
busy load generator got round to reading it (:mod:`loadtests.rxstamp`). ``requests`` reads
through ``http.client``'s buffered file, which never hands back a receive time, so the body of
a streamed response is read here instead: ``h11`` (the sans-I/O HTTP/1.1 state machine httpx
and uvicorn use) does the protocol, :class:`~loadtests.rxstamp.StampedSocket` the reads.

One connection per :class:`HttpStreamClient`, kept alive between requests the way a pooled
client keeps it (the provider sees what the OpenAI SDK would send it).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import h11

from loadtests.errors import HttpStreamError
from loadtests.rxstamp import StampedSocket

__all__ = ["HttpStreamClient", "HttpStreamError", "StreamedResponse"]

_READ_SIZE = 65536


class StreamedResponse:
    """Status and headers at once; the body through :meth:`chunks`."""

    def __init__(self, client: HttpStreamClient, status: int, headers: Mapping[str, str]) -> None:
        self._client = client
        self.status_code = status
        self.headers = dict(headers)
        self.closed = False

    def chunks(self) -> Iterator[tuple[bytes, float]]:
        """``(data, arrived_at)`` per body chunk, on the perf_counter clock; ends with the body.

        A chunk's read delay is appended to the client's ``read_delays`` list, if it has one.
        """
        client = self._client
        while not self.closed:
            event, arrived = client._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data), arrived
            elif isinstance(event, h11.EndOfMessage):
                self.closed = True
                client._finish_cycle()
                return

    def drain(self) -> None:
        """Read the rest of the body (after the stream's last event), so the connection is
        kept for the next request instead of closed."""
        for _ in self.chunks():
            pass

    def text(self) -> str:
        return b"".join(data for data, _ in self.chunks()).decode("utf-8", "replace")

    def close(self) -> None:
        """Leave the response unread: the connection cannot be reused and is closed."""
        if not self.closed:
            self.closed = True
            self._client.close()

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpStreamClient:
    """Requests to one ``http://host:port`` over a kept-alive connection.

    ``timeout`` bounds every connect and read (seconds of silence, like ``requests``);
    ``read_delays`` collects ``(arrived_at, delay)`` per read for the load metrics.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float,
        kernel_stamps: bool = True,
        read_delays: list[tuple[float, float]] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only plain http://host:port targets are streamed, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.timeout = timeout
        self.kernel_stamps = kernel_stamps
        self.read_delays = read_delays
        self._sock: socket.socket | None = None
        self._rx: StampedSocket | None = None
        self._conn: h11.Connection | None = None
        self._arrived = 0.0  # arrival stamp of the latest read: events parsed from it share it

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> StreamedResponse:
        """Send a request (a JSON body, or ``content`` as plain text) and read up to the
        response headers."""
        body = content if content is not None else b""
        fields = [("Host", self.host_header), ("Accept-Encoding", "identity")]
        if json_body is not None:
            body = json.dumps(json_body).encode()
            fields.append(("Content-Type", "application/json"))
        elif content is not None:
            fields.append(("Content-Type", "text/plain; charset=utf-8"))
        fields.append(("Content-Length", str(len(body))))
        fields.extend((headers or {}).items())
        conn = self._connection()
        try:
            out = conn.send(h11.Request(method=method, target=path, headers=fields))
            if body:
                out += conn.send(h11.Data(data=body))
            out += conn.send(h11.EndOfMessage())
            assert self._sock is not None
            self._sock.sendall(out)
            while True:
                event, _ = self._next_event()
                if isinstance(event, h11.Response):
                    decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                    return StreamedResponse(self, event.status_code, decoded)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        sock, self._sock, self._rx, self._conn = self._sock, None, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- internals -------------------------------------------------------------------------
    def _connection(self) -> h11.Connection:
        conn = self._conn
        if conn is not None and conn.our_state is h11.IDLE and conn.their_state is h11.IDLE:
            return conn
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._rx = StampedSocket(sock, self.kernel_stamps)
        self._conn = h11.Connection(h11.CLIENT)
        return self._conn

    def _next_event(self) -> tuple[object, float]:
        conn, rx = self._conn, self._rx
        if conn is None or rx is None:
            raise HttpStreamError("connection closed")
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.close()
                raise HttpStreamError(f"invalid HTTP from the server: {exc}") from exc
            if event is h11.NEED_DATA:
                data, self._arrived, delay = rx.recv(_READ_SIZE)
                if self.read_delays is not None and data:
                    self.read_delays.append((self._arrived, delay))
                conn.receive_data(data)  # b"" = the peer closed: h11 ends or raises
                continue
            if isinstance(event, h11.ConnectionClosed):
                self.close()
                raise HttpStreamError("the server closed the connection mid-response")
            return event, self._arrived

    def _finish_cycle(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()

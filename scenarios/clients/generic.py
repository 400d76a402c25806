"""Asyncio clients for any server a target profile describes (WebSocket, SSE, streamed HTTP).

Thin shells over :class:`scenarios.profiles.ProfileRecorder`: they open the connection the
profile names, send the rendered request, cut what comes back into frames and hand them to
the recorder, which fills :class:`StreamRecord` objects. A stream that ends without a frame
(a silence of ``idle_end_ms``, the connection closing) ends through the same recorder, so
every transport reports "completed", "error" (with the frame or the close that made it one) or
"disconnected" (the client dropped it) the same way.

- :class:`ProfileWebSocket`: one socket, messages one after the other (tokens belong to the
  message sent last), an optional cancel message, abrupt ``drop()``;
- :class:`ProfileHttpStream`: one streamed HTTP request per message (SSE events, lines or
  chunks), ``drop()`` aborts it, ``resume()`` asks again with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection

from scenarios.clients.aio import _Connection, _open_ws
from scenarios.clients.records import StreamRecord
from scenarios.clients.sse import SSEEvent, SSEParser
from scenarios.profiles.frames import (
    ChunkDecoder,
    Frame,
    LineSplitter,
    ProfileRecorder,
    RequestValues,
    render,
    render_headers,
    render_text,
    render_url,
)
from scenarios.profiles.schema import Profile

__all__ = ["ProfileHttpStream", "ProfileWebSocket", "target_url"]

# How much of an error response's body a record keeps.
ERROR_BODY_CHARS = 300


def target_url(base: str, profile: Profile, values: RequestValues) -> str:
    return base.rstrip("/") + render_url(profile.url, values)


def _payload(profile: Profile, values: RequestValues) -> tuple[str | None, Any]:
    """(text, json) of the request for one message; both None for a GET."""
    if profile.text is not None:
        return render_text(profile.text, values), None
    if profile.body is not None:
        return None, render(profile.body, values)
    return None, None


class _IdleWatch:
    """Ends a silent stream (``idle_end_ms``): a recorder's clock has no timer of its own."""

    def __init__(self, recorder: ProfileRecorder, wake: Callable[[], Any]) -> None:
        self.recorder = recorder
        self.wake = wake
        self.task: asyncio.Task[None] | None = None
        gap = recorder.profile.idle_end_ms
        if gap is not None:
            self.task = asyncio.create_task(self._run(min(0.05, gap / 4000)))

    async def _run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self.recorder.idle(time.perf_counter()):
                await self.wake()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class _Waits:
    """Waiting for one stream, on top of a ``wait_until(predicate, timeout_s)``."""

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        raise NotImplementedError

    async def wait(self, record: StreamRecord, timeout_s: float) -> StreamRecord:
        """Wait for the stream to end; on timeout it is marked ``timeout`` (not raised)."""
        if not await self.wait_until(lambda: record.done, timeout_s):
            record.finish("timeout", time.perf_counter())
        return record

    async def wait_tokens(self, record: StreamRecord, count: int, timeout_s: float) -> bool:
        """Wait until the stream has ``count`` tokens (or ended); True if it has them."""
        await self.wait_until(lambda: len(record.arrivals) >= count or record.done, timeout_s)
        return len(record.arrivals) >= count


class ProfileWebSocket(_Connection, _Waits):
    """A WebSocket to a server a profile describes; open with :meth:`open`."""

    def __init__(self, ws: ClientConnection, profile: Profile, read_delay_s: float) -> None:
        super().__init__(ws, read_delay_s)
        self.profile = profile
        self.recorder = ProfileRecorder(profile)
        self._idle = _IdleWatch(self.recorder, self._wake)

    @classmethod
    async def open(
        cls,
        base_url: str,
        profile: Profile,
        values: RequestValues,
        *,
        headers: Mapping[str, str] | None = None,
        read_delay_s: float = 0.0,
        open_timeout_s: float = 10.0,
        receive_buffer: int | None = None,
    ) -> ProfileWebSocket:
        """Connect to ``base_url`` + the profile's URL (``ClientConnectError`` on failure)."""
        ws = await _open_ws(
            target_url(base_url, profile, values),
            subprotocol=profile.subprotocol,
            origin=None,
            token=None,
            max_queue=16,
            ping_interval=None,
            open_timeout_s=open_timeout_s,
            headers={**render_headers(profile.headers, values), **(headers or {})},
            receive_buffer=receive_buffer,
        )
        conn = cls(ws, profile, read_delay_s)
        conn._start_reader()
        return conn

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _on_frame(self, frame: str | bytes, t: float) -> None:
        if isinstance(frame, bytes):
            data = Frame(frame.decode("utf-8", errors="replace"), binary=True)
        else:
            data = Frame(frame)
        self.recorder.handle(data, t)

    def _on_lost(self, t: float, close_code: int) -> None:
        self._idle.stop()
        self.recorder.closed(t, clean=close_code == 1000, close_code=close_code)

    async def send(self, record: StreamRecord, values: RequestValues) -> StreamRecord:
        """Send one message; ``record`` is filled as frames arrive."""
        now = time.perf_counter()
        record.sent_at, record.sent_at_epoch = now, time.time()
        self.recorder.begin(record, now)
        text, body = _payload(self.profile, values)
        await self._send(text if text is not None else json.dumps(body, ensure_ascii=False))
        return record

    async def cancel(self, record: StreamRecord, values: RequestValues) -> None:
        """Send the profile's cancel message (it must have one)."""
        assert self.profile.cancel_message is not None
        record.cancelled_at, record.cancelled_at_epoch = time.perf_counter(), time.time()
        message = render(self.profile.cancel_message, values)
        text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
        await self._send(text)

    async def drop(self) -> None:
        current = self.recorder.current
        if current is not None:
            current.finish("disconnected", time.perf_counter())
        self._idle.stop()
        await super().drop()

    async def close(self, code: int = 1000, timeout_s: float = 5.0) -> None:
        self._idle.stop()
        await super().close(code, timeout_s)


class ProfileHttpStream(_Waits):
    """One streamed HTTP request for one message, read in a task as it arrives."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        profile: Profile,
        *,
        headers: Mapping[str, str] | None = None,
        read_delay_s: float = 0.0,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.profile = profile
        self.headers = dict(headers or {})
        self.read_delay_s = read_delay_s
        self.recorder = ProfileRecorder(profile)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._idle: _IdleWatch | None = None

    async def start(
        self, record: StreamRecord, values: RequestValues, *, last_event_id: str | None = None
    ) -> StreamRecord:
        """Send the request; ``record`` fills in the background (``last_event_id``: resume)."""
        await self.stop()
        if record.done:
            record.reopen()
        now = time.perf_counter()
        if record.sent_at is None:
            record.sent_at, record.sent_at_epoch = now, time.time()
        self.recorder.current = None
        self.recorder.begin(record, now)
        headers = {**render_headers(self.profile.headers, values), **self.headers}
        if self.profile.transport == "sse":
            headers.setdefault("Accept", "text/event-stream")
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._idle = _IdleWatch(self.recorder, self._wake)
        self._task = asyncio.create_task(self._run(record, values, headers))
        return record

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(
        self, record: StreamRecord, values: RequestValues, headers: dict[str, str]
    ) -> None:
        url = target_url(self.base_url, self.profile, values)
        text, body = _payload(self.profile, values)
        try:
            async with self.client.stream(
                self.profile.method,
                url,
                json=body,
                content=text.encode() if text is not None else None,
                headers=headers,
            ) as response:
                record.http_status = response.status_code
                if not 200 <= response.status_code < 300:
                    await self._refused(record, response)
                    return
                await self._read(record, response)
        except httpx.HTTPError as exc:
            if record.http_status is None:  # no answer at all: refused, reset, timed out
                refused = isinstance(exc, httpx.ConnectError)
                record.error_code = "connect" if refused else "no_response"
                what = "cannot connect" if refused else "no answer"
                record.error_message = f"{self.profile.method} {url}: {what}: {exc!r}"
                record.finish("error", time.perf_counter())
            elif self.recorder.closed(time.perf_counter(), clean=False) is not None:
                record.error_message = f"{record.error_message} ({type(exc).__name__})"
        except Exception as exc:  # a client failure ends this stream, visibly (no silent task)
            record.error_code = "client_error"
            record.error_message = f"the harness could not send the request: {exc!r}"
            record.finish("error", time.perf_counter())
        finally:
            if self._idle is not None:
                self._idle.stop()
            await self._wake()

    async def _refused(self, record: StreamRecord, response: httpx.Response) -> None:
        raw = await response.aread()
        body = " ".join(raw[:ERROR_BODY_CHARS].decode(errors="replace").split())
        record.error_code = f"http_{response.status_code}"
        record.error_message = f"HTTP {response.status_code}: {body}"
        record.finish("error", time.perf_counter())

    async def _read(self, record: StreamRecord, response: httpx.Response) -> None:
        sse = SSEParser() if self.profile.transport == "sse" else None
        cutter = LineSplitter() if self.profile.framing == "lines" else ChunkDecoder()

        def frames(items: list[Any]) -> list[Frame]:
            out = []
            for item in items:
                if isinstance(item, SSEEvent):
                    out.append(Frame(item.data, item.event))
                    if item.id is not None:
                        record.last_event_id = item.id
                elif isinstance(item, str):
                    out.append(Frame(item))
                else:  # an SSE comment: a heartbeat, no frame
                    self.recorder.heartbeat(time.perf_counter())
            return out

        def feed(chunk: bytes) -> list[Frame]:
            return frames(sse.feed(chunk) if sse is not None else cutter.feed(chunk))

        async for chunk in response.aiter_bytes():
            t = time.perf_counter()
            for frame in feed(chunk):
                self.recorder.handle(frame, t)
            await self._wake()
            if record.done:
                return  # a client stops reading at the end (or the first error)
            if self.read_delay_s > 0:
                await asyncio.sleep(self.read_delay_s)
        t = time.perf_counter()
        for frame in frames(sse.feed_eof() if sse is not None else cutter.feed_eof()):
            self.recorder.handle(frame, t)
        self.recorder.closed(t, clean=True)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def drop(self) -> None:
        """Abort the request (the connection is closed, not returned to the pool)."""
        current = self.recorder.current
        if current is not None:
            current.finish("disconnected", time.perf_counter())
        await self.stop()

    async def stop(self) -> None:
        if self._idle is not None:
            self._idle.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

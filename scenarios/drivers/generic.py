"""The driver for any target a profile describes with frame rules (WebSocket, SSE, HTTP).

Messages go one after the other (these protocols have no stream ids); on a WebSocket they
share the socket while it stays open, over HTTP each is its own request. Actions: ``cancel``
sends the profile's cancel message; ``leave`` closes the socket (1000) or aborts the response;
``drop`` aborts the connection; ``drop_and_resend`` sends the same message again on a new
connection (a new attempt: whatever the server does with it shows in the ledger);
``drop_and_resume`` asks an SSE server again with ``Last-Event-ID``. A connection lost before
the end (a reset, a cut body, an abnormal close) is reconnected the same ways per
``on_disconnect``.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from scenarios.clients import ClientConnectError, StreamRecord
from scenarios.clients.generic import ProfileHttpStream, ProfileWebSocket
from scenarios.drivers.base import ClientContext, StreamState

__all__ = ["drive_profile"]


async def drive_profile(ctx: ClientContext) -> None:
    channel: _Channel = (
        _WebSocketChannel(ctx) if ctx.profile.transport == "websocket" else _HttpChannel(ctx)
    )
    state = None
    try:
        for m in range(ctx.group.messages):
            await ctx.think(m)
            state = ctx.new_state(m)
            if not await _one_stream(ctx, channel, state):
                break
    finally:
        await channel.close()
        if state is not None:  # what came after the last answer's end, until the close
            state.notes.extend(channel.notes())


def _lost(record: StreamRecord) -> bool:
    """Ended by the connection, not by the server's answer: worth reconnecting."""
    return record.outcome == "disconnected" or (
        record.outcome == "error" and record.error_code in ("closed", "cut")
    )


async def _one_stream(ctx: ClientContext, channel: _Channel, state: StreamState) -> bool:
    """Play one message; False when the client has gone away for good."""
    group = ctx.group
    deadline = time.perf_counter() + group.timeout_s
    record = await channel.send(state)
    for action in group.actions:
        left = max(0.0, deadline - time.perf_counter())
        if not await channel.wait_tokens(record, action.at_token + 1, left):
            state.notes.append(f"{action.do} at token {action.at_token} never ran")
            break
        if action.do == "cancel":
            await channel.cancel(record, state)
            state.cancelled_at_epoch = record.cancelled_at_epoch
            state.notes.append(f"sent the cancel message after token {action.at_token}")
            continue
        state.cancelled_at_epoch = time.time()
        if action.do == "leave":
            await channel.leave(record)
            state.notes.append(f"left after token {action.at_token} ({channel.leaving})")
            return False
        await channel.drop()
        state.notes.append(f"dropped the connection after token {action.at_token}")
        if action.do == "drop":
            return False
        await asyncio.sleep(action.reconnect_after_ms / 1000)
        if action.do == "drop_and_resume":
            await channel.resume(record, state)
            state.notes.append(f"asked again with Last-Event-ID {record.last_event_id}")
        else:
            record = await channel.send(state)
            state.notes.append("sent the message again on a new connection")
    reconnects = 0
    while True:
        await channel.wait(record, max(0.0, deadline - time.perf_counter()))
        if record.close_code is not None:
            state.add_close(record.close_code)
        state.notes.extend(channel.notes())
        if (
            not _lost(record)
            or group.on_disconnect == "none"
            or reconnects >= group.reconnects
            or time.perf_counter() >= deadline
        ):
            return True
        reconnects += 1
        how = record.error_message or record.outcome
        again = "resuming" if group.on_disconnect == "resume" else "sending the message again"
        state.notes.append(
            f"connection lost after {state.arrivals_count()} tokens ({how}); {again}"
        )
        await asyncio.sleep(group.reconnect_after_ms / 1000)
        if group.on_disconnect == "resume":
            await channel.resume(record, state)
        else:
            record = await channel.send(state)


class _Channel:
    """How one client reaches the target: a socket kept across messages, or a request each."""

    leaving = "closed the connection"

    def __init__(self, ctx: ClientContext) -> None:
        self.ctx = ctx

    def _new_record(self, state: StreamState, transport: str) -> StreamRecord:
        return StreamRecord(transport=transport, id=f"m{state.message}")  # type: ignore[arg-type]

    def _sent(self, state: StreamState, record: StreamRecord) -> StreamRecord:
        self.ctx.track(state, record)
        return record

    def _failed(
        self, state: StreamState, record: StreamRecord, code: str, message: str
    ) -> StreamRecord:
        now = time.perf_counter()
        record.sent_at, record.sent_at_epoch = now, time.time()
        record.error_code, record.error_message = code, message
        record.finish("error", now)
        return self._sent(state, record)

    async def send(self, state: StreamState) -> StreamRecord:
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Frames that arrived outside a stream since the last call, in words."""
        raise NotImplementedError

    async def wait(self, record: StreamRecord, timeout_s: float) -> None:
        raise NotImplementedError

    async def wait_tokens(self, record: StreamRecord, count: int, timeout_s: float) -> bool:
        raise NotImplementedError

    async def cancel(self, record: StreamRecord, state: StreamState) -> None:
        raise NotImplementedError

    async def leave(self, record: StreamRecord) -> None:
        raise NotImplementedError

    async def drop(self) -> None:
        raise NotImplementedError

    async def resume(self, record: StreamRecord, state: StreamState) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _WebSocketChannel(_Channel):
    leaving = "closed the socket with 1000"

    def __init__(self, ctx: ClientContext) -> None:
        super().__init__(ctx)
        self.conn: ProfileWebSocket | None = None

    async def send(self, state: StreamState) -> StreamRecord:
        record = self._new_record(state, "ws")
        values = self.ctx.values(state)
        if self.conn is None or self.conn.closed:
            if self.conn is not None:
                await self.conn.close()
            try:
                self.conn = await ProfileWebSocket.open(
                    self.ctx.endpoints.ws_url,
                    self.ctx.profile,
                    values,
                    headers=self.ctx.headers,
                    read_delay_s=self.ctx.group.read_delay_ms / 1000,
                    receive_buffer=self.ctx.group.receive_buffer_bytes,
                )
            except ClientConnectError as exc:
                self.conn = None
                code = f"http_{exc.status}" if exc.status else "connect"
                return self._failed(state, record, code, str(exc))
            self.conn.slow_frames = self.ctx.group.read_delay_frames
        return self._sent(state, await self.conn.send(record, values))

    def notes(self) -> list[str]:
        return self.conn.recorder.notes() if self.conn is not None else []

    async def wait(self, record: StreamRecord, timeout_s: float) -> None:
        if self.conn is not None and not record.done:
            await self.conn.wait(record, timeout_s)

    async def wait_tokens(self, record: StreamRecord, count: int, timeout_s: float) -> bool:
        if self.conn is None:
            return False
        return await self.conn.wait_tokens(record, count, timeout_s)

    async def cancel(self, record: StreamRecord, state: StreamState) -> None:
        assert self.conn is not None
        await self.conn.cancel(record, self.ctx.values(state))

    async def leave(self, record: StreamRecord) -> None:
        record.finish("cancelled", time.perf_counter())
        await self.close()

    async def drop(self) -> None:
        if self.conn is not None:
            self.conn.read_delay_s = 0.0
            await self.conn.drop()

    async def resume(self, record: StreamRecord, state: StreamState) -> None:
        raise AssertionError("a WebSocket profile has no resume")  # the runner skips these

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class _HttpChannel(_Channel):
    leaving = "aborted the response"

    def __init__(self, ctx: ClientContext) -> None:
        super().__init__(ctx)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(ctx.group.timeout_s, connect=5.0))
        self.stream: ProfileHttpStream | None = None

    def _open(self) -> ProfileHttpStream:
        return ProfileHttpStream(
            self.http,
            self.ctx.endpoints.http_url,
            self.ctx.profile,
            headers=self.ctx.headers,
            read_delay_s=self.ctx.group.read_delay_ms / 1000,
        )

    async def send(self, state: StreamState) -> StreamRecord:
        transport = "sse" if self.ctx.profile.transport == "sse" else "http"
        record = self._new_record(state, transport)
        if self.stream is not None:
            await self.stream.stop()
        self.stream = self._open()
        return self._sent(state, await self.stream.start(record, self.ctx.values(state)))

    def notes(self) -> list[str]:
        return self.stream.recorder.notes() if self.stream is not None else []

    async def wait(self, record: StreamRecord, timeout_s: float) -> None:
        if self.stream is not None and not record.done:
            await self.stream.wait(record, timeout_s)

    async def wait_tokens(self, record: StreamRecord, count: int, timeout_s: float) -> bool:
        if self.stream is None:
            return False
        return await self.stream.wait_tokens(record, count, timeout_s)

    async def cancel(self, record: StreamRecord, state: StreamState) -> None:
        raise AssertionError("HTTP profiles have no cancel message")  # the runner skips these

    async def leave(self, record: StreamRecord) -> None:
        record.finish("cancelled", time.perf_counter())
        await self.drop()

    async def drop(self) -> None:
        if self.stream is not None:
            await self.stream.drop()

    async def resume(self, record: StreamRecord, state: StreamState) -> None:
        self.stream = self._open()
        await self.stream.start(record, self.ctx.values(state), last_event_id=record.last_event_id)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        await self.http.aclose()

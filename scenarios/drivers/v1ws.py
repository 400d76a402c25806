"""The protocol v1 WebSocket driver (docs/protocol.md): streams keyed by id, several per
connection, cancel, resend with the session's resume token, resume after the last index."""

from __future__ import annotations

import asyncio
import time

from scenarios.clients import ClientConnectError, StreamRecord
from scenarios.clients.aio import V1Connection
from scenarios.clients.generic import target_url
from scenarios.drivers.base import ClientContext, StreamState, TargetUnreachable
from scenarios.profiles.frames import render_headers

__all__ = ["drive_v1"]


async def drive_v1(ctx: ClientContext) -> None:
    group = ctx.group
    deadline = time.perf_counter() + group.timeout_s * group.messages + 5
    conn = await _open(ctx, deadline)
    assert conn.hello is not None
    session_token = conn.hello.resume_token
    if group.concurrent:
        try:
            await _concurrent(conn, ctx)
        finally:
            await conn.close()
        return
    try:
        for m in range(group.messages):
            await ctx.think(m)
            reopened = await _one_stream(ctx, conn, m, session_token)
            if reopened is None:
                return
            conn = reopened
            if conn.closed:
                break
    finally:
        await conn.close()


async def _one_stream(
    ctx: ClientContext, conn: V1Connection, m: int, session_token: str
) -> V1Connection | None:
    """Play message ``m``; the connection it ended on, or None when the client is gone."""
    group = ctx.group
    stream_deadline = time.perf_counter() + group.timeout_s
    state, record = await _start(conn, ctx, m)
    for action in group.actions:
        left = stream_deadline - time.perf_counter()
        if not await conn.wait_tokens(record.id, action.at_token + 1, max(0.0, left)):
            state.notes.append(f"{action.do} at token {action.at_token} never ran")
            break
        if action.do in ("cancel", "leave"):
            await conn.cancel(record.id)
            state.cancelled_at_epoch = record.cancelled_at_epoch
            state.notes.append(f"cancelled after token {action.at_token}")
            if action.do == "leave":
                await conn.close()
                state.notes.append("closed the socket (left)")
                return None
            continue
        state.cancelled_at_epoch = time.time()
        # What is already buffered on our side is drained at once, not at reading speed:
        # the socket is gone, and a slow reader would otherwise take minutes.
        conn.read_delay_s = 0.0
        await conn.drop()
        state.notes.append(f"dropped the socket after token {action.at_token}")
        if action.do == "drop":
            record.finish("disconnected", time.perf_counter())
            return None
        reopened = await _reopen(ctx, state, action.reconnect_after_ms, stream_deadline)
        if reopened is None:
            record.finish("disconnected", time.perf_counter())
            return None
        conn = reopened
        await _continue(conn, record, state, action.do, session_token, ctx, action.token)
    reconnects = 0
    while True:
        left = stream_deadline - time.perf_counter()
        await conn.wait(record.id, max(0.0, left))
        if (
            record.outcome == "error"
            and record.error_code in group.resend_after_errors
            and not conn.closed
            and reconnects < group.reconnects
            and time.perf_counter() < stream_deadline
        ):
            reconnects += 1
            record = await _chat_again(conn, ctx, state, record, reconnects)
            continue
        if (
            group.on_disconnect != "none"
            and record.outcome == "error"
            and record.error_retryable
            and not conn.closed
        ):
            # A retryable error may announce the close (server_shutdown, then 1001).
            await conn.wait_closed(1.0)
        if conn.closed and conn.close_code is not None:
            state.add_close(conn.close_code)
        lost = record.outcome == "disconnected" or (
            record.outcome == "error" and record.error_retryable and conn.closed
        )
        if (
            not lost
            or group.on_disconnect == "none"
            or reconnects >= group.reconnects
            or time.perf_counter() >= stream_deadline
        ):
            return conn
        reconnects += 1
        if record.error_code is not None:
            state.errors_seen.append((record.error_code, record.error_retryable))
        state.notes.append(
            f"connection lost after {len(record.arrivals)} tokens "
            f"({record.outcome}, close {conn.close_code}); reconnecting"
        )
        await conn.close()
        reopened = await _reopen(ctx, state, group.reconnect_after_ms, stream_deadline)
        if reopened is None:
            return conn
        conn = reopened
        mode = "drop_and_resume" if group.on_disconnect == "resume" else "drop_and_resend"
        await _continue(conn, record, state, mode, session_token, ctx)


async def _chat_again(
    conn: V1Connection, ctx: ClientContext, state: StreamState, record: StreamRecord, n: int
) -> StreamRecord:
    """After an error the group resends on: the chat again under a new id, a new generation
    from index 0 (the tokens the client already has are dropped again, see dedupe_from)."""
    state.errors_seen.append((record.error_code or "", record.error_retryable))
    state.notes.append(
        f"{record.error_code} after {len(record.arrivals)} tokens; sending the chat again "
        f"as {record.id}-again{n}"
    )
    state.dedupe_from = (state.arrivals_count(), state.last_index())
    again = await conn.chat(
        ctx.messages(state),
        id=f"{record.id}-again{n}",
        model=ctx.model,
        max_tokens=ctx.group.max_tokens,
        **ctx.tool_fields(),
    )
    ctx.track(state, again)
    return again


async def _open(ctx: ClientContext, deadline: float) -> V1Connection:
    """Open a v1 connection, retrying while the server is away (a restart), until deadline."""
    values = ctx.connect_values()
    url = target_url(ctx.endpoints.ws_url, ctx.profile, values)
    headers = {**render_headers(ctx.profile.headers, values), **ctx.headers}
    while True:
        try:
            conn = await V1Connection.open(
                ctx.endpoints.ws_url,
                ctx.plan.url_id,
                url=url,
                headers=headers,
                subprotocol=ctx.profile.subprotocol,
                read_delay_s=ctx.group.read_delay_ms / 1000,
                auto_pong=ctx.group.answer_pings,
                receive_buffer=ctx.group.receive_buffer_bytes,
                hello_timeout_s=max(0.5, min(5.0, deadline - time.perf_counter())),
            )
        except ClientConnectError as exc:
            if time.perf_counter() + 0.1 > deadline:
                raise TargetUnreachable(
                    f"{ctx.plan.client_id} could not connect to {url}: {exc}"
                ) from None
            await asyncio.sleep(0.1)
            continue
        conn.slow_frames = ctx.group.read_delay_frames
        return conn


async def _reopen(
    ctx: ClientContext, state: StreamState, after_ms: float, deadline: float
) -> V1Connection | None:
    """Wait ``after_ms``, then connect again; None (with a note) when the target is gone.
    The stream then ends as it is (its outcome tells the checks); not a harness error."""
    await asyncio.sleep(after_ms / 1000)
    try:
        return await _open(ctx, deadline)
    except TargetUnreachable as exc:
        state.notes.append(f"could not reconnect: {exc}")
        return None


async def _start(
    conn: V1Connection, ctx: ClientContext, m: int
) -> tuple[StreamState, StreamRecord]:
    """Send message ``m`` as its own stream on a v1 connection and record it."""
    state = ctx.new_state(m)
    if conn.hello is not None:
        state.announced_heartbeat_ms = conn.hello.heartbeat_interval_ms
    record = await conn.chat(
        ctx.messages(state),
        id=f"m{m}",
        model=ctx.model,
        max_tokens=ctx.group.max_tokens,
        **ctx.tool_fields(),
    )
    ctx.track(state, record)
    return state, record


async def _concurrent(conn: V1Connection, ctx: ClientContext) -> None:
    """All messages at once on one connection, each its own stream (keyed by id); a drop
    action counts the first stream's tokens and drops the connection under all of them."""
    deadline = time.perf_counter() + ctx.group.timeout_s
    mine = [await _start(conn, ctx, m) for m in range(ctx.group.messages)]
    for action in ctx.group.actions:  # only drop (the model allows no other)
        first_state, first = mine[0]
        left = max(0.0, deadline - time.perf_counter())
        if await conn.wait_tokens(first.id, action.at_token + 1, left):
            conn.read_delay_s = 0.0
            await conn.drop()
            for state, record in mine:
                state.cancelled_at_epoch = time.time()
                state.notes.append(f"dropped the socket after token {action.at_token} of m0")
                record.finish("disconnected", time.perf_counter())
            return
        first_state.notes.append(f"drop at token {action.at_token} never ran")
    for state, record in mine:
        await conn.wait(record.id, max(0.0, deadline - time.perf_counter()))
        if conn.closed and conn.close_code is not None:
            state.add_close(conn.close_code)


# What a client that guesses (or stole the id but not the token) sends as a resume token.
WRONG_TOKEN = "not-this-streams-resume-token"


async def _continue(
    conn: V1Connection,
    record: StreamRecord,
    state: StreamState,
    mode: str,
    session_token: str,
    ctx: ClientContext,
    token: str = "own",
) -> None:
    """Continue a stream on a new connection: resume it (falling back to a resend when the
    server no longer knows it), or resend the chat with the same id."""
    after = state.last_index()
    if mode == "drop_and_resume" and record.stream_id and record.resume_token:
        errors_before = len(conn.recorder.connection_errors)
        starts_before = record.starts

        def answered() -> bool:
            return (
                record.done
                or record.starts > starts_before
                or _grew(record, after)
                or len(conn.recorder.connection_errors) > errors_before
            )

        proof = record.resume_token if token == "own" else WRONG_TOKEN
        await conn.resume(record.stream_id, after, proof, record=record)
        state.notes.append(
            f"resumed after index {after}"
            + (" with a wrong resume token" if token != "own" else "")
        )
        # Wait for the answer to the resume: a start or token, or an error. An unknown
        # stream's error names only the stream, so it comes as a connection-level error.
        await conn.wait_until(answered, 5.0)
        codes = [e.code for e in conn.recorder.connection_errors[errors_before:]]
        if record.outcome == "error" and record.error_code is not None:
            codes.append(record.error_code)
        if "forbidden" in codes and not record.done:
            # Refused: the stream ends here for this client (its error names only the stream).
            record.error_code, record.error_message = "forbidden", "the resume was refused"
            record.finish("error", time.perf_counter())
            state.notes.append("the server refused the resume (forbidden)")
            return
        refused = [c for c in codes if c in ("unknown_stream", "stream_expired")]
        if not refused:
            return
        state.notes.append(f"resume refused ({refused[0]}); resending the chat")
        # The server lost the stream (a restart): the resend starts a new generation that
        # begins at index 0. The client already has 0..after and drops them again, as any
        # client that keys tokens by index does.
        state.dedupe_from = (state.arrivals_count(), after)
        # The old session is gone with the stream: a fresh chat, in this connection's session.
        await conn.chat(ctx.messages(state), record=record, model=None)
        state.notes.append("sent the chat again as a new generation")
        return
    await conn.chat(
        ctx.messages(state),
        record=record,
        resume_token=session_token,
        after=after,
        model=None,
    )
    state.notes.append(f"resent the chat after index {after}")


def _grew(record: StreamRecord, after: int) -> bool:
    return any(a.index > after for a in record.arrivals[-3:])

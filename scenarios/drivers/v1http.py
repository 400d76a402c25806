"""The reference HTTP stream API of docs/protocol.md: SSE (with Last-Event-ID resume),
polling and one blocking call, for client groups that ask for them (capability v1_http)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx

from scenarios.clients import ClientConnectError, StreamRecord, aio
from scenarios.drivers.base import ClientContext
from scenarios.drivers.v1ws import WRONG_TOKEN
from scenarios.profiles.frames import render_headers

__all__ = ["drive_v1_http"]


async def drive_v1_http(ctx: ClientContext) -> None:
    group, plan = ctx.group, ctx.plan
    base = ctx.endpoints.http_url
    headers = {**render_headers(ctx.profile.headers, ctx.connect_values()), **ctx.headers}
    async with httpx.AsyncClient(timeout=group.timeout_s, headers=headers) as http:
        for m in range(group.messages):
            await ctx.think(m)
            state = ctx.new_state(m)
            messages = ctx.messages(state)
            args: dict[str, Any] = {"model": ctx.model, "max_tokens": group.max_tokens}
            args.update(ctx.tool_fields())
            if plan.transport == "blocking":
                record = await aio.blocking(
                    base, messages, timeout_s=group.timeout_s, client=http, **args
                )
                ctx.track(state, record)
                if record.outcome == "timeout":
                    # The client gave up and closed its request: the server should stop too.
                    state.cancelled_at_epoch = time.time()
                    state.notes.append(f"gave up waiting after {group.timeout_s:g} s")
                continue
            try:
                # The client's own id: the idempotency key that makes a resent create safe.
                stream_key = f"{plan.client_id}-m{m}"
                created = await aio.create_stream(
                    base, messages, client=http, id=stream_key, **args
                )
            except ClientConnectError as exc:
                failed = StreamRecord(transport=plan.transport, id=f"m{m}")  # type: ignore[arg-type]
                failed.error_message = str(exc)
                failed.error_code = f"http_{exc.status}" if exc.status else "connect"
                failed.finish("error", time.perf_counter())
                state.records.append(failed)
                continue
            if plan.transport == "polling":
                record = _record(created, "polling")
                ctx.track(state, record)
                await aio.poll(
                    base,
                    stream=created,
                    record=record,
                    interval_s=0.05,
                    timeout_s=group.timeout_s,
                    client=http,
                )
                continue
            record = _record(created, "sse")
            record.resume_token = created.resume_token
            ctx.track(state, record)
            deadline = time.perf_counter() + group.timeout_s
            stop = group.actions[0].at_token + 1 if group.actions else None
            await aio.stream_sse(
                base,
                stream=created,
                record=record,
                stop_after_tokens=stop,
                read_delay_s=group.read_delay_ms / 1000,
                timeout_s=group.timeout_s,
                client=http,
            )
            if stop is None or len(record.arrivals) < stop:
                continue
            action = group.actions[0]
            state.cancelled_at_epoch = time.time()
            state.notes.append(f"closed the event stream after token {action.at_token}")
            if action.do in ("cancel", "leave", "drop"):
                continue
            await asyncio.sleep(action.reconnect_after_ms / 1000)
            last = record.last_event_id
            if action.do == "drop_and_resend":
                # A retrying client sends its create again (same id, proved by the stream's
                # resume_token: an id alone names nobody's stream), then reads on from where
                # it was: a server without idempotency starts a second generation.
                try:
                    created = await aio.create_stream(
                        base,
                        messages,
                        client=http,
                        id=stream_key,
                        resume_token=created.resume_token,
                        **args,
                    )
                except ClientConnectError as exc:
                    state.notes.append(f"the create sent again failed: {exc}")
                    continue
                state.notes.append(f"sent the create again (id {stream_key})")
            state.notes.append(f"reconnected with Last-Event-ID {last}")
            if action.token != "own":
                created = _with_token(created, WRONG_TOKEN)
                state.notes.append("with a wrong resume token")
            await aio.stream_sse(
                base,
                stream=created,
                record=record,
                last_event_id=last,
                read_delay_s=group.read_delay_ms / 1000,
                timeout_s=max(0.1, deadline - time.perf_counter()),
                client=http,
            )


def _with_token(created: aio.CreatedStream, token: str) -> aio.CreatedStream:
    """The same stream, proved with another resume token (in the header and the URL)."""
    url = httpx.URL(created.events_url).copy_merge_params({"resume_token": token})
    return dataclasses.replace(created, resume_token=token, events_url=str(url))


def _record(created: aio.CreatedStream, transport: str) -> StreamRecord:
    return StreamRecord(
        transport=transport,  # type: ignore[arg-type]
        id=created.stream_id,
        stream_id=created.stream_id,
        sent_at=created.sent_at,
        sent_at_epoch=created.sent_at_epoch,
    )

"""Protocol probes: exchanges with a v1 server that check one promise each.

A probe client sends what its steps say (a message, a raw frame, an oversized frame, a burst)
and waits for what the protocol promises comes back: a message with given fields, a close code,
an HTTP status, headers, an event stream's wire format. Each step becomes a
:class:`~scenarios.checks.ProbeResult` whose detail says what the server did instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from scenarios import model
from scenarios.checks import ProbeResult
from scenarios.clients.aio import _Connection, _open_ws
from scenarios.clients.errors import ClientConnectError
from scenarios.clients.generic import target_url
from scenarios.clients.sse import SSEEvent, SSEParser
from scenarios.drivers.base import ClientContext

__all__ = ["drive_http_probe", "drive_probe", "matches"]

# How much of what came instead a failed step shows.
SHOWN = 4


def matches(got: Any, want: Any) -> bool:
    """``got`` has everything ``want`` has: objects compared as subsets, a list as the first
    items of the list it is compared with, the rest by == (with their JSON types)."""
    if isinstance(want, Mapping):
        return isinstance(got, Mapping) and all(
            k in got and matches(got[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) >= len(want)
            and all(matches(g, w) for g, w in zip(got, want, strict=False))
        )
    return bool(type(got) is type(want) and got == want) or (
        isinstance(want, float) and isinstance(got, int) and got == want
    )


def fill(value: Any, seen: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in seen.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, Mapping):
        return {k: fill(v, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, seen) for v in value]
    return value


def _brief(message: Any) -> str:
    text = json.dumps(message, ensure_ascii=False) if not isinstance(message, str) else message
    return text if len(text) <= 120 else text[:120] + "..."


class _ProbeConnection(_Connection):
    """A v1 socket that keeps every message as parsed JSON (or raw text), with what it saw."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws, 0.0)
        self.messages: list[Any] = []
        self.seen: dict[str, str] = {}

    async def _on_frame(self, frame: str | bytes, t: float) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            message = frame if isinstance(frame, str) else frame.decode(errors="replace")
        self.messages.append(message)
        if isinstance(message, dict):
            if message.get("type") == "hello" and isinstance(message.get("resume_token"), str):
                self.seen["session_token"] = message["resume_token"]
            if message.get("type") == "start":
                for key in ("stream_id", "resume_token"):
                    if isinstance(message.get(key), str):
                        self.seen[key] = message[key]
            if message.get("type") == "ping":  # stay alive like any client
                await self._send(json.dumps({"type": "pong", "ts": message.get("ts")}))

    def _on_lost(self, t: float, close_code: int) -> None:
        pass


def _oversized(content: str) -> dict[str, Any]:
    return {"type": "chat", "id": "oversized", "messages": [{"role": "user", "content": content}]}


def frame_of(step: model.ProbeStep, seen: Mapping[str, str]) -> str | None:
    if step.send is not None:
        return json.dumps(fill(step.send, seen))
    if step.send_text is not None:
        return step.send_text
    if step.send_bytes is not None:
        empty = json.dumps(_oversized(""))
        return json.dumps(_oversized("x" * max(0, step.send_bytes - len(empty))))
    return None


async def _step(conn: _ProbeConnection, step: model.ProbeStep) -> tuple[bool, str]:
    if step.sleep_ms:
        await asyncio.sleep(step.sleep_ms / 1000)
    start = len(conn.messages)
    frame = frame_of(step, conn.seen)
    if frame is not None:
        for _ in range(step.repeat):
            await conn._send(frame)
    within = step.within_ms / 1000

    def arrived() -> list[Any]:
        return conn.messages[start:]

    if step.expect is not None:
        want = step.expect
        met = await conn.wait_until(lambda: any(matches(m, want) for m in arrived()), within)
        if met:
            return True, ""
        others = [m for m in arrived() if not matches(m, {"type": "ping"})]
        came = ", ".join(_brief(m) for m in others[:SHOWN]) or "nothing"
        closed = f"; the socket closed with {conn.close_code}" if conn.closed else ""
        return False, f"expected {_brief(want)} within {step.within_ms} ms; came: {came}{closed}"
    assert step.expect_close is not None
    await conn.wait_closed(within)
    if conn.close_code == step.expect_close:
        return True, ""
    if conn.close_code is None:
        return False, f"expected close {step.expect_close}; the socket stayed open"
    return False, f"expected close {step.expect_close}; it closed with {conn.close_code}"


async def drive_probe(ctx: ClientContext) -> None:
    group, plan = ctx.group, ctx.plan
    client = f"{plan.group_name}/c{plan.index}"
    url = target_url(ctx.endpoints.ws_url, ctx.profile, ctx.connect_values())
    headers = dict(ctx.headers)
    if group.token is not None:
        headers["Authorization"] = f"Bearer {group.token}"
    try:
        ws = await _open_ws(
            url,
            subprotocol=ctx.profile.subprotocol,
            origin=group.origin,
            token=None,
            max_queue=None,
            ping_interval=None,
            open_timeout_s=5.0,
            headers=headers,
        )
    except ClientConnectError as exc:
        ctx.live.probes.append(ProbeResult(client, 1, group.probe[0].why, False, str(exc)))
        return
    conn = _ProbeConnection(ws)
    conn._start_reader()
    try:
        for n, step in enumerate(group.probe, 1):
            ok, detail = await _step(conn, step)
            ctx.live.probes.append(ProbeResult(client, n, step.why, ok, detail))
            if conn.closed and step.expect_close is None:
                break  # the rest cannot run on a closed socket: it already failed
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------ HTTP


async def _sse_format(response: httpx.Response, want: Mapping[str, Any], within: float) -> str:
    """What is wrong with an event stream's wire format ('' when nothing)."""
    parser, events = SSEParser(), []
    try:
        async with asyncio.timeout(within):
            async for chunk in response.aiter_bytes():
                events += [e for e in parser.feed(chunk) if isinstance(e, SSEEvent)]
                if any(e.event in ("end", "error", "cancelled") for e in events):
                    break
    except TimeoutError:
        return f"no terminal event within {within:.0f} s ({len(events)} events)"
    problems = []
    tokens = [e for e in events if e.event == "token"]
    if want.get("names"):
        unnamed = [e for e in events if e.event == "message"]
        if unnamed:
            problems.append(
                f"{len(unnamed)} events without an event: name ({_brief(unnamed[0].data)})"
            )
    if want.get("ids"):
        for e in tokens:
            index = json.loads(e.data).get("index")
            if e.id != str(index):
                problems.append(f"a token's id: is {e.id!r}, its index {index}")
                break
        terminal = next((e for e in events if e.event in ("end", "error", "cancelled")), None)
        count = len({json.loads(e.data).get("index") for e in tokens})
        if terminal is not None and want.get("from_start", True) and terminal.id != str(count):
            problems.append(f"the terminal event's id: is {terminal.id!r}, the token count {count}")
    if "replay" in want:
        start = next((e for e in events if e.event == "start"), None)
        replay = json.loads(start.data).get("replay") if start is not None else None
        if replay is not want["replay"]:
            problems.append(f"start says replay {replay!r}, expected {want['replay']!r}")
    return "; ".join(problems)


async def _http_step(
    http: httpx.AsyncClient, base: str, step: model.HttpStep, seen: dict[str, str]
) -> tuple[bool, str]:
    if step.sleep_ms:
        await asyncio.sleep(step.sleep_ms / 1000)
    path = fill(step.path, seen)
    body: Any = fill(step.json_body, seen) if step.json_body is not None else None
    if step.body_bytes is not None:
        body = {"messages": [{"role": "user", "content": "x" * step.body_bytes}]}
    headers = {k: fill(v, seen) for k, v in step.headers.items()}
    request = http.build_request(step.method, base + path, json=body, headers=headers)
    try:
        response = await http.send(request, stream=True)
    except httpx.HTTPError as exc:
        return False, f"{step.method} {path}: no answer: {exc!r}"
    try:
        problems = []
        if response.status_code != step.expect_status:
            problems.append(f"status {response.status_code}, expected {step.expect_status}")
        for name, value in step.expect_headers.items():
            if response.headers.get(name) != value:
                problems.append(
                    f"header {name}: {response.headers.get(name)!r}, expected {value!r}"
                )
        if step.sse is not None and response.status_code == 200:
            problem = await _sse_format(response, step.sse, step.within_ms / 1000)
            if problem:
                problems.append(problem)
        else:
            raw = await response.aread()
            data: Any = None
            if raw:
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = raw.decode(errors="replace")[:120]
            if step.expect_json is not None and not matches(data, step.expect_json):
                problems.append(f"body {_brief(data)}, expected {_brief(step.expect_json)}")
            for key, part in step.expect_in.items():
                found = data.get(key) if isinstance(data, dict) else None
                if not isinstance(found, str) or fill(part, seen) not in found:
                    problems.append(f"{key} {found!r} does not contain {part!r}")
            if step.save and isinstance(data, dict):
                for key in ("stream_id", "resume_token", "events_url", "tokens_url"):
                    if isinstance(data.get(key), str):
                        seen[key] = data[key]
    finally:
        await response.aclose()
    if problems:
        return False, f"{step.method} {path}: " + "; ".join(problems)
    return True, ""


async def drive_http_probe(ctx: ClientContext) -> None:
    group, plan = ctx.group, ctx.plan
    client = f"{plan.group_name}/c{plan.index}"
    headers = dict(ctx.headers)
    if group.token is not None:
        headers["Authorization"] = f"Bearer {group.token}"
    seen: dict[str, str] = {}
    base = ctx.endpoints.http_url
    async with httpx.AsyncClient(timeout=10.0, headers=headers) as http:
        for n, step in enumerate(group.http_probe, 1):
            ok, detail = await _http_step(http, base, step, seen)
            ctx.live.probes.append(ProbeResult(client, n, step.why, ok, detail))

"""The asyncio clients against live processes: mockllm + reference server (and naive)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import State
from websockets.typing import Subprotocol

from scenarios.clients import ClientConnectError, StreamRecord
from scenarios.clients.aio import (
    V1Connection,
    blocking,
    create_stream,
    poll,
    stream_sse,
    stream_tutorial,
)
from scenarios.stack import Stack, StackSpec
from scenarios.stack.procs import free_port

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "tell me a story"}]
OTHER = [{"role": "user", "content": "something else entirely"}]
# TTFT 390 ms then 12.3 ms per token, 32 tokens: long enough to act mid-stream.
MODEL = "mock-realistic"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(StackSpec(target="reference"), log_dir=tmp_path) as s:
        yield s


async def mock_answer(stack: Stack, messages: list[dict[str, str]]) -> str:
    """The mock's deterministic answer, read with the official openai SDK."""
    client = openai.AsyncOpenAI(base_url=stack.upstream_url, api_key="unused", max_retries=0)
    async with client:
        chunks = await client.chat.completions.create(
            model="mock-instant",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        parts = [c.choices[0].delta.content or "" async for c in chunks if c.choices]
    return "".join(parts)


def assert_whole(record: StreamRecord, expected_text: str) -> None:
    assert record.outcome == "completed", (record.outcome, record.error_code)
    assert record.duplicate_indexes == [] and record.missing_indexes == []
    assert record.text == expected_text


async def test_v1_two_concurrent_streams_no_cross_talk(stack: Stack) -> None:
    expected_a, expected_b = await mock_answer(stack, PROMPT), await mock_answer(stack, OTHER)
    assert expected_a != expected_b
    async with await V1Connection.open(stack.client_ws_url, "two") as conn:
        assert conn.hello is not None and conn.subprotocol == "llm-stream.v1"
        a = await conn.chat(PROMPT, model=MODEL)
        b = await conn.chat(OTHER, model=MODEL)
        await conn.wait(a.id, 15)
        await conn.wait(b.id, 15)
    assert_whole(a, expected_a)
    assert_whole(b, expected_b)
    assert conn.recorder.stray == [] and conn.protocol_errors == []
    assert a.expected_tokens == len(a.arrivals) and a.finish_reason == "stop"
    # mock-realistic: TTFT 390 ms, 12.3 ms per token; wide bands for a shared 2-core box
    assert a.ttft_s is not None and 0.3 < a.ttft_s < 2.0
    assert a.tpot_s is not None and 0.005 < a.tpot_s < 0.05
    assert len(a.gaps_s) == len(a.arrivals) - 1
    assert a.e2e_s is not None and a.e2e_s >= a.ttft_s


async def test_v1_cancel_mid_stream(stack: Stack) -> None:
    async with await V1Connection.open(stack.client_ws_url, "cancel") as conn:
        rec = await conn.chat(PROMPT, model=MODEL)
        assert await conn.wait_tokens(rec.id, 3, 10)
        await conn.cancel(rec.id)
        await conn.wait(rec.id, 10)
    assert rec.outcome == "cancelled"
    assert rec.cancelled_at_epoch is not None and rec.cancelled_at is not None
    assert rec.cancelled_index is not None and 2 <= rec.cancelled_index < 31
    assert len(rec.arrivals) == rec.cancelled_index + 1


async def test_v1_drop_then_resume_or_resend_gives_full_text_once(stack: Stack) -> None:
    expected = await mock_answer(stack, PROMPT)
    first = await V1Connection.open(stack.client_ws_url, "dropper")
    assert first.hello is not None
    session_token = first.hello.resume_token
    resumed = await first.chat(PROMPT, model=MODEL)
    resent = await first.chat(PROMPT, model=MODEL)
    assert await first.wait_tokens(resumed.id, 3, 10)
    await first.drop()
    assert first.close_code == 1006
    assert resumed.outcome == resent.outcome == "disconnected"
    assert resumed.stream_id is not None and resumed.resume_token is not None

    async with await V1Connection.open(stack.client_ws_url, "dropper") as second:
        await second.resume(
            resumed.stream_id, resumed.arrivals[-1].index, resumed.resume_token, record=resumed
        )
        last = resent.arrivals[-1].index if resent.arrivals else -1
        await second.chat(
            PROMPT, model=MODEL, record=resent, resume_token=session_token, after=last
        )
        await second.wait(resumed.id, 15)
        await second.wait(resent.id, 15)
    for rec in (resumed, resent):
        assert_whole(rec, expected)
        assert rec.reconnects == 1 and rec.replays == 1


async def test_v1_bad_frame_is_recorded_and_connection_survives(stack: Stack) -> None:
    async with await V1Connection.open(stack.client_ws_url, "bad") as conn:
        await conn.send_raw("this is not json")
        assert await conn.wait_until(lambda: bool(conn.recorder.connection_errors), 5)
        assert conn.recorder.connection_errors[0].code == "invalid_json"
        rec = await conn.stream(PROMPT, model="mock-instant", timeout_s=10)
    assert rec.outcome == "completed"


async def test_slow_reader_spaces_arrivals(stack: Stack) -> None:
    async with await V1Connection.open(
        stack.client_ws_url, "slow", read_delay_s=0.03, max_queue=1
    ) as conn:
        rec = await conn.stream(PROMPT, model="mock-instant", timeout_s=15)
    assert rec.outcome == "completed"
    # instant mock: without the delay the tokens arrive within a few ms of each other
    assert statistics.median(rec.gaps_s) >= 0.02


async def test_sse_drop_and_resume_with_last_event_id(stack: Stack) -> None:
    expected = await mock_answer(stack, PROMPT)
    created = await create_stream(stack.client_http_url, PROMPT, model=MODEL)
    rec = await stream_sse(stack.client_http_url, stream=created, stop_after_tokens=4)
    assert rec.outcome == "disconnected" and rec.last_event_id == "3"
    await stream_sse(
        stack.client_http_url, stream=created, record=rec, last_event_id=rec.last_event_id
    )
    assert_whole(rec, expected)
    assert rec.reconnects == 1 and rec.transport == "sse"


async def test_blocking_poll_and_tutorial_match_the_mock(stack: Stack) -> None:
    expected = await mock_answer(stack, PROMPT)
    b = await blocking(stack.client_http_url, PROMPT, model=MODEL)
    assert (b.outcome, b.text, b.finish_reason) == ("completed", expected, "stop")
    p = await poll(stack.client_http_url, PROMPT, model=MODEL, interval_s=0.05)
    assert_whole(p, expected)
    t = await stream_tutorial(stack.client_ws_url, PROMPT, model=MODEL, end_marker=None)
    assert (t.outcome, t.finish_reason, t.text) == ("completed", "end", expected)
    # blocking: the first token only comes with the whole answer
    assert b.ttft_s is not None and p.ttft_s is not None and b.ttft_s > p.ttft_s - 0.05


async def test_http_errors_become_outcomes(stack: Stack) -> None:
    with pytest.raises(ClientConnectError, match="HTTP 422 invalid_message") as info:
        await create_stream(stack.client_http_url, [])
    assert info.value.status == 422
    created = await create_stream(stack.client_http_url, PROMPT, model="mock-instant")
    forged = dataclasses.replace(
        created,
        events_url=created.events_url.replace(created.stream_id, "nope"),
        tokens_url=created.tokens_url.replace(created.stream_id, "nope"),
    )
    for rec in (
        await poll(stack.client_http_url, stream=forged, timeout_s=5),
        await stream_sse(stack.client_http_url, stream=forged, timeout_s=5),
    ):
        assert (rec.outcome, rec.http_status, rec.error_code) == ("error", 404, "unknown_stream")


async def test_connect_errors_are_ours() -> None:
    with pytest.raises(ClientConnectError, match="cannot connect"):
        await V1Connection.open(f"http://127.0.0.1:{free_port()}", "nobody", open_timeout_s=2)


async def test_token_and_origin_are_sent(tmp_path: Path) -> None:
    env = {
        "STREAMHARNESS_SERVER_AUTH_TOKEN": "s3cret",
        "STREAMHARNESS_SERVER_ALLOWED_ORIGINS": "http://good.example",
    }
    async with Stack(StackSpec(server_env=env), log_dir=tmp_path) as stack:
        url = stack.client_ws_url
        for kwargs in (
            {},
            {"token": "wrong"},
            {"token": "s3cret", "origin": "http://evil.example"},
        ):
            with pytest.raises(ClientConnectError, match="code 1008") as info:
                await V1Connection.open(url, "a", hello_timeout_s=5, **kwargs)
            assert info.value.close_code == 1008
        async with await V1Connection.open(
            url, "a", token="s3cret", origin="http://good.example"
        ) as conn:
            assert conn.hello is not None
        ok = await blocking(stack.client_http_url, PROMPT, model="mock-instant", token="s3cret")
        refused = await blocking(stack.client_http_url, PROMPT, model="mock-instant")
        sse = await stream_sse(stack.client_http_url, PROMPT, model="mock-instant", token="s3cret")
    assert ok.outcome == sse.outcome == "completed"
    assert (refused.outcome, refused.http_status) == ("error", 401)


async def test_cancelled_open_leaves_no_socket_open() -> None:
    # A server that accepts the WebSocket but never says hello: a caller that gives up
    # (cancels) must not leave its socket open for the garbage collector to warn about.
    opened: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def silent(ws: ServerConnection) -> None:
        # The client's pong to our ping proves it is past the handshake, waiting for hello.
        await ws.send(json.dumps({"type": "ping", "ts": 1}))
        assert json.loads(await ws.recv())["type"] == "pong"
        opened.put_nowait(ws)
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0, subprotocols=[Subprotocol("llm-stream.v1")]) as srv:
        port = srv.sockets[0].getsockname()[1]
        opening = asyncio.create_task(
            V1Connection.open(f"http://127.0.0.1:{port}", "x", hello_timeout_s=30)
        )
        server_side = await asyncio.wait_for(opened.get(), 10)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        # the client's socket is closed: the server sees the connection end
        await asyncio.wait_for(server_side.wait_closed(), 10)
        assert server_side.state is State.CLOSED

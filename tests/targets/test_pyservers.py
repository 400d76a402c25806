"""The published-shape FastAPI backends: each streams the mock's answer, and each has its flaws.

One mock and the four servers run for the whole module (real processes, stopped by the
fixtures); each test resets the mock and installs prompt rules, since no server forwards
``X-Mock-*`` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from mockllm.tokenizer import tokenize
from scenarios.stack.procs import start_process
from tests.targets import pyservers

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MODELS = ("gpt-3.5-turbo", "gpt-4o", "gpt-4o-mini")
RULES: list[dict[str, Any]] = [
    {"match": {"prompt": "(?i)long story"}, "respond": {"tokens": 40, "itl_ms": 25}},
    {"match": {"prompt": "(?i)two lines"}, "respond": {"text": "Line one.\n\nLine two."}},
    # Tokens '[', 'DONE', ']', ' and', ' more', '.' in chunks of three: "[DONE]", " and more."
    {
        "match": {"prompt": "(?i)marker"},
        "respond": {"text": "[DONE] and more.", "tokens_per_chunk": 3},
    },
    {"match": {"prompt": "(?i)broken"}, "respond": {"fault": "abort_after=3"}},
    {"match": {"prompt": "(?i)refused"}, "respond": {"fault": "status=400"}},
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pyservers")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mock_url(logs: Path) -> AsyncIterator[str]:
    argv = [sys.executable, "-m", "mockllm", "--host", "127.0.0.1", "--port", "0"]
    for model in MODELS:
        argv += ["--model", model]
    proc = await start_process("mockllm", argv, log_dir=logs)
    try:
        assert proc.url is not None
        yield proc.url.rstrip("/")
    finally:
        await proc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(mock_url: str, logs: Path) -> AsyncIterator[dict[str, str]]:
    """Every server of ``pyservers.SERVERS``, started concurrently: name -> base URL."""
    urls: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:

        async def one(name: str) -> None:
            urls[name] = await stack.enter_async_context(
                pyservers.start(name, f"{mock_url}/v1", logs)
            )

        async with asyncio.TaskGroup() as tg:
            for name in pyservers.SERVERS:
                tg.create_task(one(name))
        yield urls


@pytest_asyncio.fixture(loop_scope="module")
async def mock(mock_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the mock, reset and loaded with :data:`RULES`."""
    async with httpx.AsyncClient(base_url=mock_url, timeout=10) as admin:
        (await admin.post("/_mock/reset")).raise_for_status()
        (await admin.post("/_mock/rules", json={"rules": RULES})).raise_for_status()
        yield admin


async def ledger(mock: httpx.AsyncClient) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = (await mock.get("/_mock/requests")).json()["requests"]
    return requests


async def ended(mock: httpx.AsyncClient, count: int = 1) -> list[dict[str, Any]]:
    """The first ``count`` ended requests, waiting for them (the mock's long poll)."""
    r = await mock.post("/_mock/requests/wait", json={"count": count, "outcome": "*", "timeout": 5})
    r.raise_for_status()
    requests: list[dict[str, Any]] = r.json()["requests"]
    return requests


def sse_data(body: str) -> list[str]:
    """The ``data`` of each event, as an EventSource would dispatch them (empty ones dropped)."""
    events, data = [], []
    for line in body.split("\n"):
        if line == "":
            if "\n".join(data):
                events.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    return events


def sse_answer(events: list[str]) -> str:
    """What the usual client shows: the events joined, up to the first ``[DONE]``."""
    return "".join(events[: events.index("[DONE]")] if "[DONE]" in events else events)


def without_blank_tokens(text: str) -> str:
    """What ws_text shows: it skips whitespace-only deltas (its flaw), newlines among them."""
    return "".join(token for token in tokenize(text) if token.strip())


async def ws_answer(ws: Any, length: int) -> str:
    """Frames until ``length`` characters arrived (the protocol has no end frame)."""
    text = ""
    async with asyncio.timeout(5):
        while len(text) < length:
            text += await ws.recv()
    return text


# --- ws_text --------------------------------------------------------------------------------


async def test_ws_text_streams_frames_and_ends_in_silence(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    url = servers["ws_text"].replace("http://", "ws://") + "/chat"
    async with connect(url) as ws:
        await ws.send("hello")
        (first,) = await ended(mock)
        assert first["outcome"] == "completed" and first["model"] == "gpt-3.5-turbo"
        shown = without_blank_tokens(first["text"])
        assert await ws_answer(ws, len(shown)) == shown
        with pytest.raises(TimeoutError):  # no end frame: the end is silence
            await asyncio.wait_for(ws.recv(), 0.3)
        await ws.send("and then?")  # the same connection takes the next prompt
        second = (await ended(mock, 2))[1]
        shown = without_blank_tokens(second["text"])
        assert await ws_answer(ws, len(shown)) == shown
    messages = second["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == first["text"]


async def test_ws_text_drops_newlines(servers: dict[str, str], mock: httpx.AsyncClient) -> None:
    url = servers["ws_text"].replace("http://", "ws://") + "/chat"
    async with connect(url) as ws:
        await ws.send("two lines please")
        (entry,) = await ended(mock)
        assert entry["text"] == "Line one.\n\nLine two."
        assert await ws_answer(ws, len("Line one.Line two.")) == "Line one.Line two."


async def test_ws_text_keeps_reading_the_provider_after_the_client_left(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    url = servers["ws_text"].replace("http://", "ws://") + "/chat"
    async with connect(url) as ws:
        await ws.send("tell me a long story")
        for _ in range(3):
            await ws.recv()
    (entry,) = await ended(mock)  # the client has been gone since its third token
    assert entry["outcome"] == "completed"
    assert entry["tokens_sent"] == 40


async def test_ws_text_drops_the_connection_on_a_provider_error(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    url = servers["ws_text"].replace("http://", "ws://") + "/chat"
    async with connect(url) as ws:
        await ws.send("broken answer")
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
    # No error frame, not even a close frame: the client sees 1006 (abnormal closure).
    assert closed.value.rcvd is None


# --- sse_get and sse_sync -------------------------------------------------------------------

SSE_URLS = {"sse_get": ("/stream", "prompt"), "sse_sync": ("/api/stream", "q")}


async def sse_get(servers: dict[str, str], name: str, prompt: str) -> httpx.Response:
    path, param = SSE_URLS[name]
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(servers[name] + path, params={param: prompt})


@pytest.mark.parametrize("name", ["sse_get", "sse_sync"])
async def test_sse_streams_raw_data_then_done(
    servers: dict[str, str], mock: httpx.AsyncClient, name: str
) -> None:
    r = await sse_get(servers, name, "hello")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    (entry,) = await ledger(mock)
    assert entry["outcome"] == "completed" and entry["model"] == pyservers.SERVERS[name].model
    assert r.text.endswith("data: [DONE]\n\n")
    # Raw `data: {token}` lines: a token's newline splits its event and EventSource drops it.
    assert sse_answer(sse_data(r.text)) == entry["text"].replace("\n", "")


@pytest.mark.parametrize("name", ["sse_get", "sse_sync"])
async def test_sse_done_in_the_answer_and_newlines_are_lost(
    servers: dict[str, str], mock: httpx.AsyncClient, name: str
) -> None:
    r = await sse_get(servers, name, "say the marker")
    assert r.text == "data: [DONE]\n\ndata:  and more.\n\ndata: [DONE]\n\n"
    assert sse_answer(sse_data(r.text)) == ""  # the answer was "[DONE] and more."
    r = await sse_get(servers, name, "two lines")
    assert "data: \n\n\n\n" in r.text  # the "\n\n" token: an empty event
    assert sse_answer(sse_data(r.text)) == "Line one.Line two."


async def test_sse_get_error_is_a_cut_body(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        stream = client.stream("GET", servers["sse_get"] + "/stream", params={"prompt": "refused"})
        async with stream as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await r.aread()
    (entry,) = await ledger(mock)
    assert entry["outcome"] == "fault:status"


@pytest.mark.parametrize(("name", "blocks"), [("sse_sync", True), ("sse_get", False)])
async def test_sse_sync_blocks_other_requests(
    servers: dict[str, str], mock: httpx.AsyncClient, name: str, blocks: bool
) -> None:
    """A second request during a 1 s answer: sse_sync serves it only after that answer."""
    path, param = SSE_URLS[name]
    url = servers[name] + path

    async def second(client: httpx.AsyncClient) -> float:
        async with client.stream("GET", url, params={param: "hello"}) as r:
            headers_at = time.monotonic()
            await r.aread()
        return headers_at

    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", url, params={param: "a long story"}) as slow:
            chunks = slow.aiter_bytes()
            await anext(chunks)  # the slow answer (40 tokens, 25 ms apart) has begun
            started = time.monotonic()
            task = asyncio.create_task(second(client))
            async for _ in chunks:
                pass
            slow_end = time.monotonic()
        headers_at = await task
    long, short = await ended(mock, 2)
    assert long["body"]["messages"][-1]["content"] == "a long story"
    if blocks:
        # Not even its headers: the loop was busy in the synchronous iteration.
        assert headers_at - started > 0.5
        assert headers_at >= slow_end - 0.05
        assert short["started_at"] >= long["ended_at"] - 0.05  # its provider call too
    else:
        assert headers_at < slow_end - 0.3
        assert short["ended_at"] < long["ended_at"]


@pytest.mark.parametrize("name", ["sse_sync", "sse_get", "ai_data_stream"])
async def test_provider_call_after_the_client_left(
    servers: dict[str, str], mock: httpx.AsyncClient, name: str
) -> None:
    """sse_sync reads the provider to the end; the async generators are cancelled."""
    async with httpx.AsyncClient(timeout=10) as client:
        if name == "ai_data_stream":
            body = {"messages": [{"role": "user", "content": "a long story"}]}
            request = client.stream("POST", servers[name] + "/api/chat", json=body)
        else:
            path, param = SSE_URLS[name]
            request = client.stream("GET", servers[name] + path, params={param: "a long story"})
        async with request as r:
            await anext(r.aiter_bytes())
    (entry,) = await ended(mock)
    if name == "sse_sync":
        assert (entry["outcome"], entry["tokens_sent"]) == ("completed", 40)
    else:
        assert entry["outcome"] == "client_disconnected"
        assert entry["disconnect_index"] < 40


# --- ai_data_stream -------------------------------------------------------------------------


async def ai_chat(servers: dict[str, str], prompt: str) -> tuple[httpx.Response, list[str], bool]:
    """POST like useChat v4; the lines received and whether the body ended properly."""
    body = {"id": "chat-1", "messages": [{"role": "user", "content": prompt, "parts": []}]}
    lines: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", servers["ai_data_stream"] + "/api/chat", json=body) as r,
    ):
        try:
            async for line in r.aiter_lines():
                lines.append(line)
        except httpx.RemoteProtocolError:
            return r, lines, False
    return r, lines, True


async def test_ai_data_stream_parts(servers: dict[str, str], mock: httpx.AsyncClient) -> None:
    r, lines, complete = await ai_chat(servers, "hello")
    assert complete and r.status_code == 200
    assert r.headers["x-vercel-ai-data-stream"] == "v1"
    (entry,) = await ledger(mock)
    assert entry["model"] == "gpt-4o-mini" and entry["body"]["stream_options"]
    assert all(line.startswith("0:") for line in lines[:-2])
    assert "".join(json.loads(line[2:]) for line in lines[:-2]) == entry["text"]
    finish = json.loads(lines[-1][2:])
    assert finish["finishReason"] == "stop"
    assert finish["usage"]["completionTokens"] == entry["tokens_sent"]
    assert finish["usage"]["promptTokens"] > 0
    assert json.loads(lines[-2][2:]) == {**finish, "isContinued": False}
    assert lines[-2].startswith("e:{") and lines[-1].startswith("d:{")


async def test_ai_data_stream_error_part_before_the_answer(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    r, lines, complete = await ai_chat(servers, "refused")
    assert complete and r.status_code == 200
    (line,) = lines
    assert line.startswith('3:"Error code: 400')
    (entry,) = await ledger(mock)
    assert entry["outcome"] == "fault:status"


async def test_ai_data_stream_mid_answer_failure_cuts_the_body(
    servers: dict[str, str], mock: httpx.AsyncClient
) -> None:
    r, lines, complete = await ai_chat(servers, "broken answer")
    assert r.status_code == 200 and not complete
    (entry,) = await ended(mock)
    assert entry["outcome"] == "fault:abort_after" and entry["tokens_sent"] == 3
    # Three deltas, then nothing: no 3: error part, no e:/d: finish.
    assert [line[:2] for line in lines] == ["0:", "0:", "0:"]

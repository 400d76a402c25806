"""The Node servers against the mock: exact bytes, and what they do when things go wrong.

Each test starts its own mock (``python -m mockllm``) and Node server as real processes and
stops both. Skipped, with the reason, only when ``node``/``npm`` are missing; the first run
installs the pinned packages (``npm ci``, seconds) into the cache outside the repository.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scenarios.stack.procs import ManagedProcess, start_process
from tests.targets import node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROMPT = "Hello"
# What ai 6's DefaultChatTransport (useChat) posts for a first message: `messageId` is
# undefined for `sendMessage({text})`, so JSON.stringify leaves it out (ids are generated).
USE_CHAT_BODY: dict[str, Any] = {
    "id": "chat-1",
    "messages": [{"parts": [{"type": "text", "text": PROMPT}], "id": "msg-1", "role": "user"}],
    "trigger": "submit-message",
}
EXPRESS_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": PROMPT}]}
SLOW = {"respond": {"tokens": 60, "itl_ms": 20}}  # 1.2 s of answer
DROP = {"respond": {"fault": "abort_after=3"}}
DEADLINE_S = 10.0
MODELS = ["--model", "gpt-4o-mini", "--model", "gpt-3.5-turbo"]  # the servers' hard-coded ones


def sse(data: dict[str, Any] | str) -> bytes:
    """One SSE event as JavaScript's ``JSON.stringify`` writes it."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of a raw SSE body (complete events only)."""
    return [part.removeprefix(b"data: ").decode() for part in raw.split(b"\n\n")[:-1]]


@pytest.fixture(scope="session")
def node_root() -> Path:
    reason = node.node_available()
    if reason is not None:
        pytest.skip(f"Node servers not tested: {reason}")
    return node.ensure_installed()


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[ManagedProcess]:
    proc = await start_process(
        "mockllm",
        [sys.executable, "-m", "mockllm", "--port", "0", *MODELS],
        log_dir=tmp_path,
    )
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
async def admin(mock: ManagedProcess) -> AsyncIterator[httpx.AsyncClient]:
    assert mock.url is not None
    async with httpx.AsyncClient(base_url=mock.url, timeout=DEADLINE_S) as client:
        yield client


async def launch(
    name: str, mock: ManagedProcess, tmp_path: Path, node_root: Path
) -> ManagedProcess:
    assert mock.url is not None
    return await node.launch(name, mock.url + "/v1", tmp_path)


async def add_rule(admin: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    (await admin.post("/_mock/rules", json=[rule])).raise_for_status()


async def ended_entry(admin: httpx.AsyncClient) -> dict[str, Any]:
    """The ledger's one request, once it has ended (the mock answers when it happens)."""
    r = await admin.post(
        "/_mock/requests/wait", json={"count": 1, "outcome": "*", "timeout": DEADLINE_S}
    )
    assert r.status_code == 200, "the provider request did not end within the deadline"
    (entry,) = r.json()["requests"]
    return entry


async def preview_tokens(admin: httpx.AsyncClient, body: dict[str, Any]) -> list[str]:
    r = await admin.post("/_mock/preview", json=body)
    r.raise_for_status()
    tokens: list[str] = r.json()["tokens"]
    return tokens


async def exited(proc: ManagedProcess) -> int:
    assert proc.process is not None
    async with asyncio.timeout(DEADLINE_S):
        return await proc.process.wait()


async def read_some(
    url: str, body: dict[str, Any], marker: bytes, count: int
) -> tuple[bytes, float]:
    """POST, read until ``count`` events containing ``marker``, close; (bytes, close time)."""
    raw = b""
    async with (
        httpx.AsyncClient(timeout=DEADLINE_S) as client,
        client.stream("POST", url + "/api/chat", json=body) as response,
    ):
        assert response.status_code == 200
        async for piece in response.aiter_raw():
            raw += piece
            if sum(marker in e.encode() for e in events(raw)) >= count:
                break
    return raw, time.time()


# --- ai_sdk_ui: streamText + pipeUIMessageStreamToResponse (ai 6) -------------------------


async def test_ai_sdk_ui_streams_the_ui_message_stream(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    proc = await launch("ai_sdk_ui", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            r = await client.post(proc.url + "/api/chat", json=USE_CHAT_BODY)
        entry = await ended_entry(admin)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["transfer-encoding"] == "chunked"
        # What the provider got: chat completions, the UI message flattened to a string.
        assert entry["outcome"] == "completed"
        assert entry["body"] == {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        tokens = await preview_tokens(admin, entry["body"])
        assert "".join(tokens) == entry["text"]
        assert r.content == (
            sse({"type": "start"})
            + sse({"type": "start-step"})
            + sse({"type": "text-start", "id": "0"})
            + b"".join(sse({"type": "text-delta", "id": "0", "delta": t}) for t in tokens)
            + sse({"type": "text-end", "id": "0"})
            + sse({"type": "finish-step"})
            + sse({"type": "finish", "finishReason": "stop"})
            + sse("[DONE]")
        )
    finally:
        await proc.stop()


async def test_ai_sdk_ui_on_the_responses_api_streams_the_mock_answer(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``openai('gpt-4o-mini')``, the AI SDK's default since ai 5, calls ``/v1/responses``:
    the mock answers it in that format and the UI message stream carries the same text."""
    assert mock.url is not None
    proc = await node.launch("ai_sdk_ui", mock.url + "/v1", tmp_path, args=["--api", "responses"])
    try:
        assert proc.url is not None
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            r = await client.post(proc.url + "/api/chat", json=USE_CHAT_BODY)
        entry = await ended_entry(admin)
        assert r.status_code == 200
        assert entry["format"] == "openai_responses" and entry["outcome"] == "completed"
        assert entry["body"]["stream"] is True and entry["body"]["model"] == "gpt-4o-mini"
        chunks = [json.loads(e) for e in events(r.content) if e != "[DONE]"]
        deltas = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
        assert deltas == entry["text"] and deltas
        assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
        assert not [c for c in chunks if c["type"] == "error"]
    finally:
        await proc.stop()


async def test_ai_sdk_ui_in_band_provider_error_is_an_error_chunk(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """``data: {"error": ...}`` from the provider: a masked error chunk, then a clean end."""
    await add_rule(admin, {"respond": {"fault": "error_after=3"}})
    proc = await launch("ai_sdk_ui", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            r = await client.post(proc.url + "/api/chat", json=USE_CHAT_BODY)
        entry = await ended_entry(admin)
        assert entry["outcome"] == "fault:error_after"
        tokens = (await preview_tokens(admin, entry["body"]))[:3]
        assert r.content == (
            sse({"type": "start"})
            + sse({"type": "start-step"})
            + sse({"type": "text-start", "id": "0"})
            + b"".join(sse({"type": "text-delta", "id": "0", "delta": t}) for t in tokens)
            + sse({"type": "error", "errorText": "An error occurred."})
            + sse({"type": "text-end", "id": "0"})
            + sse({"type": "finish-step"})
            + sse({"type": "finish", "finishReason": "error"})
            + sse("[DONE]")
        )
        assert proc.running
    finally:
        await proc.stop()


async def test_ai_sdk_ui_provider_drop_ends_the_body_then_kills_the_process(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A TCP drop mid-stream: no error chunk, no [DONE]; the body still ends cleanly.

    ``pipeUIMessageStreamToResponse`` returns a promise that rejects with the read error;
    the documented handler does not await or catch it, so Node 20 exits with code 1.
    """
    await add_rule(admin, DROP)
    proc = await launch("ai_sdk_ui", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            r = await client.post(proc.url + "/api/chat", json=USE_CHAT_BODY)
        entry = await ended_entry(admin)
        assert entry["outcome"] == "fault:abort_after"
        tokens = (await preview_tokens(admin, entry["body"]))[:3]
        assert r.status_code == 200  # a complete chunked body: httpx raised nothing
        assert r.content == (
            sse({"type": "start"})
            + sse({"type": "start-step"})
            + sse({"type": "text-start", "id": "0"})
            + b"".join(sse({"type": "text-delta", "id": "0", "delta": t}) for t in tokens)
        )
        assert await exited(proc) == 1
        log = proc.log_path.read_text()
        assert "AI_APICallError" in log and "TypeError: terminated" in log
    finally:
        await proc.stop()


async def test_ai_sdk_ui_client_abort_leaves_the_provider_request_running(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The response stops, but streamText keeps reading the provider to its end.

    ``pipeUIMessageStreamToResponse`` cancels its reader on the response's ``close``; the
    provider call itself stops only with ``streamText({abortSignal})``, which the docs'
    handler does not pass.
    """
    await add_rule(admin, SLOW)
    proc = await launch("ai_sdk_ui", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        _, closed_at = await read_some(proc.url, USE_CHAT_BODY, b'"text-delta"', 3)
        entry = await ended_entry(admin)
        assert entry["outcome"] == "completed"
        assert entry["tokens_sent"] == 60
        assert entry["ended_at"] > closed_at + 0.5  # ~57 tokens x 20 ms after the client left
        assert proc.running
    finally:
        await proc.stop()


# --- express_openai: Express 4 + openai, the blog-post shape ------------------------------


async def test_express_openai_streams_content_events(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    proc = await launch("express_openai", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            r = await client.post(proc.url + "/api/chat", json=EXPRESS_BODY)
        entry = await ended_entry(admin)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache"
        assert entry["outcome"] == "completed"
        assert entry["body"] == {
            "model": "gpt-3.5-turbo",
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
        }
        tokens = await preview_tokens(admin, entry["body"])
        assert "".join(tokens) == entry["text"]
        assert r.content == b"".join(sse({"content": t}) for t in tokens) + sse("[DONE]")
    finally:
        await proc.stop()


async def test_express_openai_provider_drop_kills_the_process(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Flaw 1: no try/catch in an async Express 4 handler; Node 20 exits on the rejection."""
    await add_rule(admin, DROP)
    proc = await launch("express_openai", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        raw = b""
        async with (
            httpx.AsyncClient(timeout=DEADLINE_S) as client,
            client.stream("POST", proc.url + "/api/chat", json=EXPRESS_BODY) as response,
        ):
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # cut: no final chunk
                async for piece in response.aiter_raw():
                    raw += piece
        entry = await ended_entry(admin)
        assert entry["outcome"] == "fault:abort_after"
        tokens = (await preview_tokens(admin, entry["body"]))[:3]
        assert raw == b"".join(sse({"content": t}) for t in tokens)
        assert await exited(proc) == 1
        log = proc.log_path.read_text()
        assert "TypeError: terminated" in log  # openai 6 lets undici's error through
    finally:
        await proc.stop()


async def test_express_openai_keeps_the_provider_request_after_the_client_left(
    node_root: Path, mock: ManagedProcess, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Flaw 2: no req.on('close'): the provider streams all 60 tokens to a gone client."""
    await add_rule(admin, SLOW)
    proc = await launch("express_openai", mock, tmp_path, node_root)
    try:
        assert proc.url is not None
        _, closed_at = await read_some(proc.url, EXPRESS_BODY, b'"content"', 3)
        entry = await ended_entry(admin)
        assert entry["outcome"] == "completed"
        assert entry["tokens_sent"] == 60
        assert entry["ended_at"] > closed_at + 0.5  # ~57 tokens x 20 ms after the client left
        assert proc.running
    finally:
        await proc.stop()

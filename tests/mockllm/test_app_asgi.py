"""MockApp driven directly through ASGI (no sockets): the stream loop and disconnects."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from mockllm.app import MockApp, MockConfig

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()


def scope(headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }


async def test_stream_to_the_end() -> None:
    app = MockApp()
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message})

    await app(scope({"X-Mock-Tokens": "5"}), receive, send)
    disconnect.set()
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert sent[0]["status"] == 200
    assert body.endswith(b"data: [DONE]\n\n")
    (entry,) = app.ledger.query()
    assert (entry.outcome, entry.tokens_sent) == ("completed", 5)


async def test_disconnect_mid_stream_cancels_and_records_the_index() -> None:
    app = MockApp()
    sent: list[bytes] = []
    gone = asyncio.Event()
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            if len(sent) == 3:
                gone.set()  # the client leaves after the third event

    headers = {"X-Mock-Tokens": "100", "X-Mock-Itl-Ms": "5"}
    await asyncio.wait_for(app(scope(headers), receive, send), 5)
    (entry,) = app.ledger.query()
    assert entry.outcome == "client_disconnected"
    assert entry.disconnect_index == 3
    assert len(sent) == 3
    assert app.active_streams == 0


async def run_lifespan(app: MockApp) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start and stop the app's lifespan; the GC thresholds while running and after."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[str] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        await outbox.put(message["type"])

    run = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    assert await asyncio.wait_for(outbox.get(), 2) == "lifespan.startup.complete"
    running = gc.get_threshold()
    await inbox.put({"type": "lifespan.shutdown"})
    assert await asyncio.wait_for(outbox.get(), 2) == "lifespan.shutdown.complete"
    await asyncio.wait_for(run, 2)
    return running, gc.get_threshold()


async def test_lifespan_collector_owns_gc_only_when_asked() -> None:
    before = gc.get_threshold()
    try:
        running, after = await run_lifespan(MockApp(MockConfig(manage_gc=False)))
        assert running == after == before
        running, after = await run_lifespan(MockApp(MockConfig(manage_gc=True)))
        assert running[:2] == before[:2] and running[2] > 1_000_000
        assert after == before
    finally:
        gc.set_threshold(*before)


async def _status_for(app: MockApp, model: str) -> int:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope({}), receive, send)
    return int(sent[0]["status"])


async def test_any_model_answers_a_hard_coded_model_name() -> None:
    assert await _status_for(MockApp(), "gpt-3.5-turbo") == 404
    assert await _status_for(MockApp(MockConfig(any_model=True)), "gpt-3.5-turbo") == 200

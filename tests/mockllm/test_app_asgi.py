"""MockApp driven directly through ASGI (no sockets): the stream loop and disconnects."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from mockllm.app import MockApp, MockConfig
from tests.support import wait_for_async

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
    assert len(sent) == 3
    # Every token the client got (three, or more when a late wake-up sent two due together).
    received = sum(body.count(b'"delta":{"content":') for body in sent)
    assert entry.disconnect_index == received >= 3
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


class _Client:
    """One request's ASGI side: the body, then a disconnect that never comes."""

    def __init__(self, body: bytes = BODY):
        self.messages = [{"type": "http.request", "body": body, "more_body": False}]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append({**message})

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def test_drain_completes_a_split_event_then_writes_the_error_event() -> None:
    from mockllm.formats.openai_chat import SHUTDOWN_EVENT

    app = MockApp()
    client = _Client()
    # The first event goes out in two writes 10 s apart: the drain comes in between.
    headers = {"X-Mock-Fault": "split_chunk=0;pause_ms=10000", "X-Mock-Tokens": "5"}
    call = asyncio.ensure_future(app(scope(headers), client.receive, client.send))
    await wait_for_async(lambda: len(client.sent) >= 2, what="the first half of an event")
    assert await app.drain(5.0) == 1
    await asyncio.wait_for(call, 5.0)
    body = client.body
    assert body.endswith(SHUTDOWN_EVENT) and b"[DONE]" not in body
    events = body[: -len(SHUTDOWN_EVENT)].split(b"\n\n")
    assert events[-1] == b"" and all(json.loads(e.removeprefix(b"data: ")) for e in events[:-1])
    assert client.sent[-1]["more_body"] is False
    (entry,) = app.ledger.query()
    assert entry.outcome == "server_shutdown"


async def test_drain_answers_503_before_the_headers_and_refuses_new_requests() -> None:
    app = MockApp()
    unsent = _Client(BODY.replace(b'"stream": true', b'"stream": false'))
    call = asyncio.ensure_future(
        app(scope({"X-Mock-Ttft-Ms": "60000"}), unsent.receive, unsent.send)
    )
    await wait_for_async(lambda: app.active_streams == 1, what="the answer in flight")
    await app.drain(5.0)
    await asyncio.wait_for(call, 5.0)
    assert unsent.sent[0]["status"] == 503
    assert json.loads(unsent.body)["error"]["code"] == "server_shutdown"
    late = _Client()
    await app(scope({}), late.receive, late.send)
    assert late.sent[0]["status"] == 503
    assert [e.outcome for e in app.ledger.query()] == ["server_shutdown"]


def _body_sends(client: _Client) -> list[dict[str, Any]]:
    return [m for m in client.sent if m["type"] == "http.response.body"]


async def test_an_instant_answer_is_one_write_with_the_end_of_the_body() -> None:
    app = MockApp()
    client = _Client()
    await app(scope({"X-Mock-Tokens": "200"}), client.receive, client.send)
    (only,) = _body_sends(client)
    assert only["more_body"] is False
    assert only["body"].count(b'"delta":{"content":') == 200
    assert only["body"].endswith(b"data: [DONE]\n\n")
    (entry,) = app.ledger.query()
    assert (entry.outcome, entry.tokens_sent) == ("completed", 200)
    assert entry.first_token_at is not None


async def test_paced_events_are_written_one_by_one_the_last_with_the_end() -> None:
    app = MockApp()
    client = _Client()
    headers = {"X-Mock-Tokens": "5", "X-Mock-Itl-Ms": "30"}
    await app(scope(headers), client.receive, client.send)
    sends = _body_sends(client)
    assert [m["body"].count(b'"delta":{"content":') for m in sends] == [1, 1, 1, 1, 1]
    assert sends[-1]["body"].endswith(b"data: [DONE]\n\n") and sends[-1]["more_body"] is False


async def test_events_due_within_a_millisecond_go_out_together() -> None:
    app = MockApp()
    client = _Client()
    # Six tokens 0.3 ms apart: all due within 1.5 ms of the start.
    headers = {"X-Mock-Tokens": "6", "X-Mock-Itl-Ms": "0.3"}
    await app(scope(headers), client.receive, client.send)
    sends = _body_sends(client)
    assert sum(m["body"].count(b'"delta":{"content":') for m in sends) == 6
    assert len(sends) <= 3  # one per event would be 6 (fewer, never more, on a slow machine)


async def test_a_long_instant_answer_lets_other_work_run_between_its_writes() -> None:
    app = MockApp()
    client = _Client()
    seen_at: list[int] = []
    loop = asyncio.get_running_loop()

    async def send(message: dict[str, Any]) -> None:
        await client.send(message)
        if len(client.sent) == 2:  # the first body write: something else wants the loop now
            loop.call_soon(lambda: seen_at.append(len(client.sent)))

    await app(scope({"X-Mock-Tokens": "20000"}), client.receive, send)
    sends = _body_sends(client)
    assert len(sends) > 10 and all(len(m["body"]) < 80_000 for m in sends)
    assert seen_at and seen_at[0] < len(client.sent)  # it ran before the stream had ended
    (entry,) = app.ledger.query()
    assert (entry.outcome, entry.tokens_sent) == ("completed", 20000)


async def test_a_client_leaving_a_long_instant_answer_stops_it_and_is_recorded() -> None:
    app = MockApp()
    gone = asyncio.Event()
    bodies: list[bytes] = []
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            gone.set()  # the client leaves after the first write

    await asyncio.wait_for(app(scope({"X-Mock-Tokens": "20000"}), receive, send), 5)
    (entry,) = app.ledger.query()
    received = sum(body.count(b'"delta":{"content":') for body in bodies)
    assert entry.outcome == "client_disconnected"
    assert entry.disconnect_index == received < 20000
    assert not bodies[-1].endswith(b"data: [DONE]\n\n")


async def test_the_first_event_is_not_written_before_it_is_due() -> None:
    app = MockApp()
    loop = asyncio.get_running_loop()
    first: list[float] = []
    client = _Client()

    async def send(message: dict[str, Any]) -> None:
        await client.send(message)
        if message["type"] == "http.response.body" and not first:
            first.append(loop.time())

    # Due 0.8 ms after the start: under a millisecond, but not due yet when the stream starts.
    started = loop.time()
    await app(scope({"X-Mock-Tokens": "3", "X-Mock-Ttft-Ms": "0.8"}), client.receive, send)
    assert first[0] - started >= 0.0008
    (only,) = _body_sends(client)  # the three tokens are due together: one write
    assert only["body"].count(b'"delta":{"content":') == 3

"""SSE, polling, blocking and cancel over HTTP, plus /healthz and /stats."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.reference_server.httpapi import create, read_events
from tests.reference_server.live import Ledger, Process, ServerFactory
from tests.reference_server.wsclient import assert_dense, prompt

pytestmark = pytest.mark.integration


async def test_sse_stream_and_last_event_id_resume(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("sse", tokens=30, itl_ms=10))
        first = await read_events(http, info["events_url"], stop_after=10)
        assert first[0]["event"] == "start" and first[0]["data"]["stream_id"] == info["stream_id"]
        seen = [e for e in first if e.get("event") == "token"]
        last_id = seen[-1]["id"]
        rest = await read_events(http, info["events_url"], **{"Last-Event-ID": last_id})
        assert rest[0]["data"]["replay"] is True
        more = [e for e in rest if e.get("event") == "token"]
        assert_dense([e["data"]["index"] for e in seen + more], 30)
        assert all(e["id"] == str(e["data"]["index"]) for e in seen + more)
        end = rest[-1]
        assert end["event"] == "end" and end["id"] == "30" and end["data"]["tokens"] == 30
        [entry] = ledger.wait(1, outcome="completed")
        assert "".join(e["data"]["content"] for e in seen + more) == entry["text"]
        assert len(ledger.requests()) == 1
        # A browser EventSource reconnecting after the end gets 204 and stops.
        again = await http.get(info["events_url"], headers={"Last-Event-ID": "30"})
        assert again.status_code == 204


async def test_sse_errors(server: Process) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("x", tokens=2))
        sid = info["stream_id"]
        response = await http.get(f"/v1/streams/{sid}/events")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        response = await http.get("/v1/streams/nope/events?resume_token=x")
        assert response.status_code == 404
        response = await http.get(info["events_url"], headers={"Last-Event-ID": "abc"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_message"
        ok = await http.get(
            f"/v1/streams/{sid}/events", headers={"X-Resume-Token": info["resume_token"]}
        )
        assert ok.status_code == 200 and "event: end" in ok.text


async def test_sse_heartbeat_comments(server_factory: ServerFactory) -> None:
    server = server_factory(heartbeat_interval_s=0.2)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("slow", tokens=2, ttft_ms=700))
        events = await read_events(http, info["events_url"])
        assert any(e.get("comment") == "ping" for e in events)
        assert events[-1]["event"] == "end"


async def test_polling(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("poll", tokens=25, itl_ms=10))
        after, tokens, body = -1, [], {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = (await http.get(f"{info['tokens_url']}&after={after}")).json()
            tokens += body["tokens"]
            after = body["next_after"]
            if body["done"]:
                break
            await asyncio.sleep(0.05)  # the polling interval of a polling client
        assert body["done"] and body["finish_reason"] == "stop" and body["error"] is None
        assert_dense([t["index"] for t in tokens], 25)
        [entry] = ledger.wait(1, outcome="completed")
        assert "".join(t["content"] for t in tokens) == entry["text"]
        bad = await http.get(info["tokens_url"] + "&after=x")
        assert bad.status_code == 400


async def test_cancel_over_http(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        info = await create(http, messages=prompt("long", tokens=500, itl_ms=20))
        headers = {"X-Resume-Token": info["resume_token"]}
        ledger.wait(1)  # the upstream request is running (a cancel before it would skip it)
        response = await http.delete(f"/v1/streams/{info['stream_id']}", headers=headers)
        assert response.status_code == 200
        ledger.wait(1, outcome="client_disconnected")
        again = await http.delete(f"/v1/streams/{info['stream_id']}", headers=headers)
        assert again.status_code == 409


async def test_blocking(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        response = await http.post("/v1/chat/blocking", json={"messages": prompt("b", tokens=9)})
        assert response.status_code == 200
        body = response.json()
        [entry] = ledger.wait(1, outcome="completed")
        assert body["content"] == entry["text"] and body["tokens"] == 9
        assert body["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 9


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (b'{"messages": "hi"}', 422, "invalid_message"),
        (b'{"messages": [{"role": "user"}], "max_tokens": "3"}', 422, "invalid_message"),
        (
            b'{"messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}',
            413,
            "message_too_big",
        ),
        # JSON that json.loads accepts and the upstream request could not carry.
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 422, "invalid_message"),
        (b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', 422, "invalid_message"),
        (b'{"messages": [{"role": "user"}], "temperature": NaN}', 422, "invalid_message"),
        (b'{"messages": [{"role": "user"}], "temperature": 1e400}', 422, "invalid_message"),
        (
            b'{"messages": [{"role": "user"}], "max_tokens": ' + b"9" * 5000 + b"}",
            422,
            "invalid_message",
        ),
        (b'{"messages": [' + b"[" * 20_000 + b"]" * 20_000 + b"]}", 422, "invalid_message"),
        (
            b'{"messages": [{"role": "user"}], "x": ' + b"[" * 100 + b"]" * 100 + b"}",
            422,
            "invalid_message",
        ),
    ],
)
async def test_http_bad_input(
    server: Process, ledger: Ledger, payload: bytes, status: int, code: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        before = (await http.get("/stats")).json()["totals"]["streams"]
        for path in ("/v1/chat/blocking", "/v1/streams"):
            response = await http.post(path, content=payload)
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert error["code"] == code and error["message"] and error["retryable"] is False
        # Refused up front: no stream, no upstream request.
        assert (await http.get("/stats")).json()["totals"]["streams"] == before
    assert ledger.requests() == []


async def test_blocking_upstream_failure(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        body = {"messages": prompt("b", tokens=9, fault="abort_after=2")}
        response = await http.post("/v1/chat/blocking", json=body)
        assert response.status_code == 502
        assert response.json()["error"] == {
            "code": "upstream_error",
            "message": response.json()["error"]["message"],
            "retryable": True,
        }


async def test_blocking_client_disconnect_stops_upstream(server: Process, ledger: Ledger) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=0.5) as http:
        body = {"messages": prompt("b", tokens=500, itl_ms=20)}
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/blocking", json=body)
    ledger.wait(1, outcome="client_disconnected")


async def test_healthz_and_stats(server: Process) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        stats = (await http.get("/stats")).json()
        for key in (
            "connections",
            "streams",
            "active_generations",
            "tasks",
            "upstream_connections",
            "send_queue_bytes",
        ):
            assert isinstance(stats[key], int), key


async def test_browser_client_page(server: Process) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "llm-stream.v1" in page.text and "EventSource" in page.text

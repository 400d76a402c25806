"""WebSocket protocol v1 against live reference_server + mockllm processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reference_server.live import Ledger, Process, ServerFactory
from tests.reference_server.wsclient import V1Client, assert_dense, prompt
from tests.support import wait_for_async

pytestmark = pytest.mark.integration


async def test_hello_chat_end(server: Process, ledger: Ledger) -> None:
    client = await V1Client.open(server.ws_url)
    hello = client.hello
    assert hello["protocol"] == "llm-stream.v1"
    assert hello["session_id"] and len(hello["resume_token"]) >= 16
    assert set(hello["limits"]) == {
        "max_message_bytes",
        "max_streams",
        "messages_per_second",
        "resume_grace_ms",
    }
    await client.chat("a", prompt("hello", tokens=12))
    got = await client.collect("a")
    assert got.start is not None and got.start["replay"] is False and got.start["stream_id"]
    assert_dense(got.indexes, 12)
    assert got.terminal is not None and got.terminal["type"] == "end"
    assert got.terminal["finish_reason"] == "stop" and got.terminal["tokens"] == 12
    assert got.terminal["usage"]["completion_tokens"] == 12
    [entry] = ledger.wait(1, outcome="completed")
    assert entry["text"] == got.text
    assert entry["body"]["stream"] is True
    await client.close()


async def test_several_streams_on_one_connection(server: Process, ledger: Ledger) -> None:
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("first", tokens=15, itl_ms=10))
    await client.chat("b", prompt("second", tokens=10, itl_ms=10))
    by_id: dict[str, list[dict[str, object]]] = {"a": [], "b": []}
    ends: dict[str, dict[str, object]] = {}
    while len(ends) < 2:
        message = await client.recv()
        if message["type"] == "token":
            by_id[message["id"]].append(message)
        elif message["type"] in ("end", "error", "cancelled"):
            ends[message["id"]] = message
    assert {k: v["type"] for k, v in ends.items()} == {"a": "end", "b": "end"}
    assert_dense([int(str(t["index"])) for t in by_id["a"]], 15)
    assert_dense([int(str(t["index"])) for t in by_id["b"]], 10)
    assert len(ledger.wait(2, outcome="completed")) == 2
    await client.close()


async def test_cancel_stops_the_upstream_request(server: Process, ledger: Ledger) -> None:
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("long", tokens=500, itl_ms=20))
    await client.collect("a", stop_after_tokens=3)
    cancelled_at = time.time()
    await client.send(type="cancel", id="a")
    got = await client.collect("a")
    assert got.terminal is not None and got.terminal["type"] == "cancelled"
    assert got.terminal["index"] >= 2
    [entry] = ledger.wait(1, outcome="client_disconnected")
    # The issue asks for 100 ms; measured ~1 ms median here (`streamharness bench lifecycle`).
    assert entry["ended_at"] - cancelled_at < 0.1, entry["ended_at"] - cancelled_at
    assert entry["tokens_sent"] < 100
    await client.assert_usable()
    await client.close()


async def test_new_chat_never_cancels_another(server: Process, ledger: Ledger) -> None:
    client = await V1Client.open(server.ws_url)
    await client.chat("a", prompt("one", tokens=20, itl_ms=10))
    await client.collect("a", stop_after_tokens=2)
    await client.chat("b", prompt("two", tokens=3))
    ends: dict[str, str] = {}
    while len(ends) < 2:
        message = await client.recv()
        if message["type"] in ("end", "error", "cancelled"):
            ends[message["id"]] = message["type"]
    assert ends == {"a": "end", "b": "end"}
    await client.close()


async def test_resend_same_socket_replays_without_a_second_generation(
    server: Process, ledger: Ledger
) -> None:
    client = await V1Client.open(server.ws_url)
    messages = prompt("idem", tokens=8)
    await client.chat("a", messages)
    first = await client.collect("a")
    await client.chat("a", messages)
    again = await client.collect("a")
    assert again.start is not None and again.start["replay"] is True
    assert again.start["stream_id"] == first.start["stream_id"]  # type: ignore[index]
    assert again.text == first.text and again.terminal["type"] == "end"  # type: ignore[index]
    ledger.wait(1, outcome="completed")
    assert len(ledger.requests()) == 1
    await client.close()


async def test_resend_after_reconnect_continues_exactly_once(
    server: Process, ledger: Ledger
) -> None:
    first = await V1Client.open(server.ws_url, "phone")
    messages = prompt("resend", tokens=40, itl_ms=15)
    await first.chat("q1", messages)
    part = await first.collect("q1", stop_after_tokens=5)
    await first.drop()
    second = await V1Client.open(server.ws_url, "phone")
    last = part.indexes[-1]
    await second.chat("q1", messages, resume_token=first.hello["resume_token"], after=last)
    rest = await second.collect("q1")
    assert rest.start is not None and rest.start["replay"] is True
    assert rest.terminal is not None and rest.terminal["type"] == "end"
    assert_dense(part.indexes + rest.indexes, 40)
    [entry] = ledger.wait(1, outcome="completed")
    assert part.text + rest.text == entry["text"]
    assert len(ledger.requests()) == 1  # exactly one upstream generation
    await second.close()


async def test_resume_by_stream_id_delivers_every_token_once(
    server: Process, ledger: Ledger
) -> None:
    first = await V1Client.open(server.ws_url, "laptop")
    await first.chat("q", prompt("resume", tokens=60, itl_ms=10))
    part = await first.collect("q", stop_after_tokens=7)
    assert part.start is not None
    await first.drop()
    # Generation runs on while nobody listens (the point of resume): 10 more tokens upstream.
    await wait_for_async(
        lambda: ledger.requests()[0]["tokens_sent"],
        what="tokens generated after the drop",
        until=lambda sent: sent >= len(part.indexes) + 10,
    )
    second = await V1Client.open(server.ws_url, "laptop")
    await second.send(
        type="resume",
        stream_id=part.start["stream_id"],
        after=part.indexes[-1],
        resume_token=part.start["resume_token"],
    )
    rest = await second.collect("q")
    assert rest.terminal is not None and rest.terminal["type"] == "end"
    assert_dense(part.indexes + rest.indexes, 60)
    [entry] = ledger.wait(1, outcome="completed")
    assert part.text + rest.text == entry["text"]
    assert len(ledger.requests()) == 1
    await second.close()


async def test_resume_unknown_and_expired(server_factory: ServerFactory, ledger: Ledger) -> None:
    server = server_factory(resume_grace_s=0.3, stream_retention_s=0)
    client = await V1Client.open(server.ws_url)
    await client.send(type="resume", stream_id="nope", after=-1, resume_token="x")
    error = await client.recv_type("error")
    assert error["code"] == "unknown_stream" and error["stream_id"] == "nope"
    await client.chat("a", prompt("short", tokens=3))
    got = await client.collect("a")
    assert got.start is not None
    stream_id, token = got.start["stream_id"], got.start["resume_token"]
    # With no retention the finished stream is dropped within a reaper tick.
    for _ in range(100):
        await client.send(type="resume", stream_id=stream_id, after=-1, resume_token=token)
        reply = await client.recv()
        while reply["type"] not in ("error", "start"):
            reply = await client.recv()
        if reply["type"] == "error":
            break
        await client.collect("a")
        await asyncio.sleep(0.05)
    assert reply["code"] == "stream_expired" and reply["retryable"] is False
    await client.assert_usable()
    await client.close()


async def test_client_id_is_not_a_credential(server: Process, ledger: Ledger) -> None:
    owner = await V1Client.open(server.ws_url, "same")
    await owner.chat("secret", prompt("mine", tokens=200, itl_ms=10))
    got = await owner.collect("secret", stop_after_tokens=1)
    assert got.start is not None
    intruder = await V1Client.open(server.ws_url, "same")
    await intruder.send(type="cancel", id="secret")
    assert (await intruder.recv_type("error"))["code"] == "unknown_stream"
    await intruder.send(
        type="resume", stream_id=got.start["stream_id"], after=-1, resume_token="guess"
    )
    assert (await intruder.recv_type("error"))["code"] == "forbidden"
    await intruder.chat("secret", prompt("x"), resume_token="guess")
    assert (await intruder.recv_type("error"))["code"] == "forbidden"
    # The owner's stream was untouched.
    await owner.send(type="cancel", id="secret")
    assert (await owner.collect("secret")).terminal["type"] == "cancelled"  # type: ignore[index]
    await owner.close()
    await intruder.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        (b"\x00\x01binary", "binary_not_supported"),
        ('{"type": "chat", "id": 7, "messages": "hi"}', "invalid_message"),
        (
            '{"type": "chat", "id": "x", "messages": [{"role": "user"}], "max_tokens": "9"}',
            "invalid_message",
        ),
        ('{"type": "teleport", "id": "x"}', "unknown_type"),
        ('{"type": "cancel", "id": "never-started"}', "unknown_stream"),
        ('["a", "list"]', "invalid_message"),
        # JSON that json.loads accepts and the upstream request could not carry.
        (
            '{"type": "chat", "id": "s", "messages": [{"role": "user", "content": "\\ud800"}]}',
            "invalid_message",
        ),
        (
            '{"type": "chat", "id": "n", "messages": [{"role": "user"}], "temperature": NaN}',
            "invalid_message",
        ),
        (
            '{"type": "chat", "id": "b", "messages": [{"role": "user"}], "max_tokens": '
            + "9" * 5000
            + "}",
            "invalid_message",
        ),
        (
            '{"type": "chat", "id": "d", "messages": [' + "[" * 20_000 + "]" * 20_000 + "]}",
            "invalid_message",
        ),
    ],
)
async def test_bad_input_gets_an_error_and_the_socket_stays_usable(
    server: Process, ledger: Ledger, frame: str | bytes, code: str
) -> None:
    client = await V1Client.open(server.ws_url)
    await client.ws.send(frame)
    error = await client.recv_type("error")
    assert error["code"] == code and error["message"] and error["retryable"] is False
    assert not [m for m in client.others if m["type"] == "start"]  # refused before a stream
    assert ledger.requests() == []
    await client.assert_usable()
    await client.chat("after-bad-input", prompt("fine", tokens=2))
    assert (await client.collect("after-bad-input")).terminal["type"] == "end"  # type: ignore[index]
    await client.close()


async def test_tool_calls_stream_as_their_own_messages(server: Process, ledger: Ledger) -> None:
    client = await V1Client.open(server.ws_url)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    await client.chat("t", prompt("weather?", tool="get_weather"), tools=tools)
    got = await client.collect("t")
    calls = [m for m in got.tokens if m["type"] == "tool_call"]
    assert calls and calls[0]["name"] == "get_weather" and calls[0]["call_id"]
    assert got.terminal is not None and got.terminal["finish_reason"] == "tool_calls"
    assert_dense(got.indexes)
    await client.close()


async def test_permessage_deflate_is_off_by_default_and_can_be_enabled(
    server: Process, server_factory: ServerFactory
) -> None:
    # The websockets client offers permessage-deflate, as every browser does.
    for target, expect_deflate in (
        (server, False),
        (server_factory(ws_per_message_deflate=True), True),
    ):
        client = await V1Client.open(target.ws_url, compression="deflate")
        assert client.ws.response is not None
        extensions = client.ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) is expect_deflate, extensions
        await client.chat("a", prompt("deflate", tokens=30))
        got = await client.collect("a")
        assert_dense(got.indexes, 30)
        assert got.terminal is not None and got.terminal["type"] == "end"
        await client.close()

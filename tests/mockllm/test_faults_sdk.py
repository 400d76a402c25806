"""Each fault raises, in the official openai SDK, the exception a user would see."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from mockllm.client import MockAdmin

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]


def create(client: openai.OpenAI, fault: str, *, stream: bool = True, **headers: str) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=stream,
        extra_headers={"X-Mock-Fault": fault, "X-Mock-Tokens": "8", **headers},
    )


def drain(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_429_is_a_rate_limit_error_carrying_retry_after(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        create(client, "status=429;retry_after=2")
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    assert admin.requests()[-1]["outcome"] == "fault:status"
    assert admin.requests()[-1]["status"] == 429


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_an_internal_server_error(client: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        create(client, f"status={status}", stream=False)
    assert info.value.status_code == status
    assert info.value.body is not None


def test_sdk_retries_a_429_then_succeeds_via_rule(mock_url: str, admin: MockAdmin) -> None:
    admin.add_rule(match={"nth": 1}, respond={"fault": "status=429;retry_after=0"})
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="t", max_retries=2) as sdk:
        completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content
    assert [e["outcome"] for e in admin.requests()] == ["fault:status", "completed"]


def test_abort_is_a_connection_error(client: openai.OpenAI, admin: MockAdmin) -> None:
    received = []
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)):
        for chunk in create(client, "abort_after=3"):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert len(received) == 3
    entry = admin.wait(1, outcome="fault:abort_after", timeout=5)[0]
    assert entry["tokens_sent"] == 3


def test_abort_without_stream_is_a_connection_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        create(client, "abort_after=0", stream=False)


def test_malformed_chunk_raises_json_decode_error(client: openai.OpenAI) -> None:
    with pytest.raises(json.JSONDecodeError):
        drain(create(client, "malformed_after=4"))


def test_error_mid_stream_is_an_api_error(client: openai.OpenAI, admin: MockAdmin) -> None:
    with pytest.raises(openai.APIError) as info:
        drain(create(client, "error_after=2"))
    assert not isinstance(info.value, openai.APIStatusError)
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "server_error"
    assert admin.requests()[-1]["outcome"] == "fault:error_after"


def test_no_done_still_ends_cleanly(client: openai.OpenAI, mock_url: str, admin: MockAdmin) -> None:
    text = drain(create(client, "no_done"))
    assert len(text) > 0
    raw = httpx.post(
        f"{mock_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        headers={"X-Mock-Fault": "no_done"},
    )
    assert b"[DONE]" not in raw.content
    assert admin.requests()[-1]["outcome"] == "fault:no_done"


def test_truncate_ends_the_body_cleanly_without_a_finish(
    client: openai.OpenAI, mock_url: str, admin: MockAdmin
) -> None:
    stream = create(client, "truncate_after=3")
    chunks = list(stream)  # no exception: to the SDK it is just the end
    assert all(c.choices[0].finish_reason is None for c in chunks if c.choices)
    assert drain(iter(chunks)) == admin.requests()[-1]["text"]
    raw = httpx.post(
        f"{mock_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        headers={"X-Mock-Fault": "truncate_after=3", "X-Mock-Tokens": "8"},
    )
    assert raw.status_code == 200 and b"[DONE]" not in raw.content
    assert b'"finish_reason":"' not in raw.content
    (entry,) = [e for e in admin.requests() if e["outcome"] == "fault:truncate_after"][-1:]
    assert entry["tokens_sent"] == 3


def test_split_chunk_arrives_in_two_tcp_writes_and_still_parses(
    client: openai.OpenAI, mock_url: str
) -> None:
    expected = drain(create(client, "none"))
    assert drain(create(client, "split_chunk;pause_ms=30")) == expected
    # Raw socket: the first content event must arrive cut in two pieces, 30 ms apart.
    parts = urlsplit(mock_url)
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Mock-Tokens: 8\r\nX-Mock-Fault: split_chunk=0;pause_ms=30\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        reads: list[tuple[float, bytes]] = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reads.append((time.monotonic(), data))
    first_half = next(i for i, (_, d) in enumerate(reads) if b'"role":"assistant"' in d)
    assert b"[DONE]" not in reads[first_half][1]
    assert reads[first_half + 1][0] - reads[first_half][0] >= 0.02


def test_stall_pauses_the_stream(client: openai.OpenAI) -> None:
    arrivals = []
    start = time.monotonic()
    for chunk in create(client, "stall_after=2;seconds=0.4"):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 8
    assert arrivals[1] < 0.3
    assert 0.35 < arrivals[2] - arrivals[1] < 1.5


def test_slow_headers_delay_the_response(client: openai.OpenAI) -> None:
    start = time.monotonic()
    response = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Mock-Fault": "slow_headers=300"},
    )
    assert 0.25 < time.monotonic() - start < 2.0
    assert drain(response.parse())


def test_unknown_fault_is_a_400_listing_names(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        create(client, "explode")
    assert info.value.code == "unknown_fault"
    assert "abort_after" in info.value.message and "stall_after" in info.value.message


async def test_async_client_sees_the_same_fault_exceptions(aclient: openai.AsyncOpenAI) -> None:
    async with aclient:
        with pytest.raises(openai.RateLimitError) as info:
            await aclient.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                extra_headers={"X-Mock-Fault": "status=429;retry_after=1"},
            )
        assert info.value.response.headers["retry-after"] == "1"
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Mock-Fault": "error_after=1"},
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


def test_disconnect_during_a_stall_is_recorded_at_once(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    stream = create(client, "stall_after=2;seconds=30")
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 2:
            break
    stream.close()
    closed_at = time.time()
    entry = admin.wait(1, outcome="client_disconnected", timeout=5)[0]
    assert entry["disconnect_index"] == 2
    assert entry["ended_at"] - closed_at < 0.1


def test_metadata_controls_like_headers(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        metadata={"mock_text": "From metadata."},
        store=True,
    )
    assert completion.choices[0].message.content == "From metadata."

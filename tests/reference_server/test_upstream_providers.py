"""The upstream client over each provider adapter, against a scripted HTTP server on 127.0.0.1.

What differs per provider (the request line, the vendor's headers, the body, the stream) and
what must not (retries before the first event, the retryable error after it, status errors
read in the vendor's error shape). The WebSocket protocol end to end over each adapter, against
the live mock, is ``test_integration_providers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reference_server.errors import UpstreamError, UpstreamStatusError
from reference_server.providers import (
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    provider_named,
)
from reference_server.upstream import RetryPolicy, UpstreamClient
from tests.reference_server.test_upstream_http import read_request, tcp_server

DATA = Path(__file__).parent / "data"
ANTHROPIC_BASIC = (DATA / "anthropic_basic.sse").read_bytes()
OLLAMA_CHAT = (DATA / "ollama_chat.ndjson").read_bytes()
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
OVERLOADED = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


@dataclass
class Script:
    """Answers the requests in order with these (status, content type, body); records them."""

    answers: list[tuple[int, str, bytes]]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                script.requests.append(await read_request(reader))
                status, kind, body = script.answers[len(script.requests) - 1]
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                    % (status, kind.encode(), len(body), body)
                )
                await writer.drain()
        writer.close()

    async with tcp_server(handler) as port:
        yield port


async def stream(
    port: int, provider: str, base: str, **options: object
) -> tuple[list[UpstreamEvent], list[float]]:
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    client = UpstreamClient(
        f"http://127.0.0.1:{port}{base}",
        provider=provider_named(provider),
        retry=RetryPolicy(max_retries=2, backoff_base_s=0.01),
        sleep=no_sleep,
        **options,  # type: ignore[arg-type]
    )
    events: list[UpstreamEvent] = []
    try:
        await client.stream_chat(dict(CHAT), events.append)
    finally:
        await client.aclose()
    return events, slept


def head_of(request: tuple[bytes, bytes]) -> tuple[str, dict[str, str]]:
    line, *fields = request[0].decode().strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return line, headers


async def test_anthropic_request_and_stream() -> None:
    script = Script([(200, "text/event-stream", ANTHROPIC_BASIC)])
    async with scripted(script) as port:
        events, _ = await stream(port, "anthropic", "/v1", api_key="sk-ant-test")
    assert [e for e in events if isinstance(e, UpstreamToken)] == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
        UpstreamToken("!"),
    ]
    assert events[-1] == UpstreamFinish(
        "stop", {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    )
    [request] = script.requests
    line, headers = head_of(request)
    assert line == "POST /v1/messages HTTP/1.1"
    assert headers["x-api-key"] == "sk-ant-test" and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert json.loads(request[1]) == {**CHAT, "max_tokens": 4096, "stream": True}


async def test_anthropic_529_and_an_error_event_before_the_first_token_are_retried() -> None:
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    script = Script(
        [
            (529, "application/json", overloaded),
            (200, "text/event-stream", OVERLOADED),
            (200, "text/event-stream", ANTHROPIC_BASIC),
        ]
    )
    async with scripted(script) as port:
        events, slept = await stream(port, "anthropic", "/v1")
    assert "".join(e.content for e in events if isinstance(e, UpstreamToken)) == "Hello there!"
    assert len(script.requests) == 3 and len(slept) == 2


async def test_anthropic_error_event_after_a_token_ends_the_stream_unretried() -> None:
    first = ANTHROPIC_BASIC.split(b"event: content_block_delta")
    partial = first[0] + b"event: content_block_delta" + first[1] + OVERLOADED
    script = Script([(200, "text/event-stream", partial)] * 3)
    async with scripted(script) as port:
        with pytest.raises(UpstreamError, match="overloaded_error: Overloaded") as info:
            await stream(port, "anthropic", "/v1")
    assert info.value.retryable and len(script.requests) == 1


async def test_anthropic_client_error_is_read_in_its_error_shape_and_not_retried() -> None:
    body = b'{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}'
    script = Script([(404, "application/json", body)] * 3)
    async with scripted(script) as port:
        with pytest.raises(UpstreamStatusError, match="404: model: nope") as info:
            await stream(port, "anthropic", "/v1")
    assert not info.value.retryable and len(script.requests) == 1


async def test_ollama_request_and_stream() -> None:
    script = Script([(200, "application/x-ndjson", OLLAMA_CHAT)])
    async with scripted(script) as port:
        events, _ = await stream(port, "ollama", "/api")
    assert events == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
        UpstreamFinish("stop", {"prompt_tokens": 10, "completion_tokens": 17, "total_tokens": 27}),
    ]
    [request] = script.requests
    line, headers = head_of(request)
    assert line == "POST /api/chat HTTP/1.1"
    assert headers["accept"] == "application/x-ndjson" and "authorization" not in headers
    assert json.loads(request[1]) == {**CHAT, "stream": True}


async def test_ollama_error_status_and_mid_stream_error() -> None:
    missing = b'{"error":"model \\"m\\" not found, try pulling it first"}'
    script = Script([(404, "application/json", missing)])
    async with scripted(script) as port:
        with pytest.raises(UpstreamStatusError, match='404: model "m" not found') as info:
            await stream(port, "ollama", "/api")
    assert not info.value.retryable
    broken = OLLAMA_CHAT.split(b"\n")[0] + b'\n{"error":"out of memory"}\n'
    script = Script([(200, "application/x-ndjson", broken)])
    async with scripted(script) as port:
        with pytest.raises(UpstreamError, match="out of memory") as mid:
            await stream(port, "ollama", "/api")
    assert mid.value.retryable and len(script.requests) == 1


@pytest.mark.parametrize(
    ("provider", "client", "default", "sent"),
    [
        ("anthropic", None, None, 4096),  # the API requires one
        ("anthropic", None, 50, 50),
        ("anthropic", 3, 50, 3),  # the client's own wins
        ("openai", None, None, None),
        ("openai", None, 7, 7),
    ],
)
async def test_default_max_tokens_when_the_client_gives_none(
    provider: str, client: int | None, default: int | None, sent: int | None
) -> None:
    answer = (200, "text/event-stream", ANTHROPIC_BASIC)
    if provider == "openai":
        answer = (200, "text/event-stream", b"data: [DONE]\n\n")
    script = Script([answer])
    chat = {**CHAT, "max_tokens": client} if client is not None else CHAT
    async with scripted(script) as port:
        upstream = UpstreamClient(
            f"http://127.0.0.1:{port}/v1",
            provider=provider_named(provider),
            default_max_tokens=default,
        )
        try:
            await upstream.stream_chat(dict(chat), lambda event: None)
        finally:
            await upstream.aclose()
    assert json.loads(script.requests[0][1]).get("max_tokens") == sent

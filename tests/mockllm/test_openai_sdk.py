"""The official openai SDK (sync and async) against a live mock started from its CLI."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from mockllm.client import MockAdmin

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about streaming."}]


def stream_text(client: openai.OpenAI, **kwargs: Any) -> tuple[str, list[str], str | None]:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs
    )
    pieces: list[str] = []
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(pieces), pieces, finish


def test_streamed_text_equals_non_streamed(client: openai.OpenAI, admin: MockAdmin) -> None:
    text, pieces, finish = stream_text(client)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == text
    assert finish == completion.choices[0].finish_reason == "stop"
    assert len(pieces) == 32  # the default answer length, one token per chunk
    preview = admin.preview({"model": "gpt-4o-mini", "messages": MESSAGES})
    assert preview["tokens"] == pieces


def test_async_client_streams_the_same_text(
    client: openai.OpenAI, aclient: openai.AsyncOpenAI
) -> None:
    import asyncio

    async def run() -> str:
        async with aclient:
            stream = await aclient.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    sync_text, _, _ = stream_text(client)
    assert asyncio.run(run()) == sync_text


def test_same_seed_same_bytes_other_seed_other_text(mock_url: str) -> None:
    def raw(seed: str) -> list[bytes]:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        response = httpx.post(
            f"{mock_url}/v1/chat/completions", json=body, headers={"X-Mock-Seed": seed}
        )
        # id and created identify the call, not the content: normalise them away.
        events = []
        for event in response.content.split(b"\n\n"):
            if event.startswith(b"data: {"):
                chunk = json.loads(event[6:])
                chunk["id"], chunk["created"] = "X", 0
                events.append(json.dumps(chunk).encode())
            else:
                events.append(event)
        return events

    first, again, other = raw("1"), raw("1"), raw("2")
    assert first == again
    assert first != other


def test_usage_chunk_and_length(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        max_tokens=5,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 5


async def test_client_disconnect_is_in_the_ledger_with_its_index(
    aclient: openai.AsyncOpenAI, admin: MockAdmin
) -> None:
    async with aclient:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Mock-Itl-Ms": "20", "X-Mock-Tokens": "500"},
        )
        seen = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += 1
            if seen == 5:
                break
        await stream.close()
        closed_at = time.time()
    entry = admin.wait(1, outcome="client_disconnected", timeout=5)[0]
    assert entry["ended_at"] - closed_at < 0.1
    assert 5 <= entry["disconnect_index"] <= 7
    assert entry["tokens_sent"] == entry["disconnect_index"]

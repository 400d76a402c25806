"""The pytest plugin's ``mockllm`` fixture and marker, used exactly as a user would."""

from __future__ import annotations

import openai
import pytest

from mockllm.client import MockAdmin

pytestmark = pytest.mark.integration


def test_fixture_serves_and_records(mockllm: MockAdmin) -> None:
    with openai.OpenAI(base_url=mockllm.base_url, api_key="test", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    (entry,) = mockllm.requests()
    assert entry["text"] == text and entry["outcome"] == "completed"


def test_each_test_starts_with_an_empty_ledger(mockllm: MockAdmin) -> None:
    assert mockllm.requests() == []
    assert mockllm.rules() == []


@pytest.mark.mockllm(
    seed=3,
    profile="fast",
    rules=[{"match": {"nth": 1}, "respond": {"fault": "status=503"}}],
)
def test_marker_options(mockllm: MockAdmin) -> None:
    assert mockllm.config()["profile"] == "fast"
    assert mockllm.config()["seed"] == 3
    # Closed: a pooled keep-alive socket left to the garbage collector fails a later test.
    with openai.OpenAI(base_url=mockllm.base_url, api_key="test", max_retries=1) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content
    assert [e["outcome"] for e in mockllm.requests()] == ["fault:status", "completed"]


def test_marker_options_do_not_leak(mockllm: MockAdmin) -> None:
    assert mockllm.config()["profile"] == "instant"
    assert mockllm.rules() == []


async def test_async_client_with_the_fixture(mockllm: MockAdmin) -> None:
    async with openai.AsyncOpenAI(base_url=mockllm.base_url, api_key="test") as client:
        completion = await client.chat.completions.create(
            model="mock-instant", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content

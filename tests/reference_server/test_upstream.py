"""Pure parts of the upstream client: chat chunks, Retry-After, backoff (SSE: tests/mockllm).

The client itself is exercised against the live mockllm in test_integration_*.py.
"""

from __future__ import annotations

import json
import random

import pytest

from reference_server.errors import UpstreamError, UpstreamStatusError
from reference_server.providers import UpstreamFinish, UpstreamToken, UpstreamToolCall
from reference_server.providers.openai_chat import ChunkDecoder, EventDecoder
from reference_server.upstream import RetryPolicy, UpstreamClient, parse_retry_after


def chunk(delta: dict[str, object], finish: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def test_chunk_decoder_text_stream() -> None:
    decoder = ChunkDecoder()
    events = []
    for data in [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        json.dumps({"choices": [], "usage": {"total_tokens": 5}}),
        "[DONE]",
    ]:
        events += decoder.feed(data)
    assert events == [UpstreamToken("Hel"), UpstreamToken("lo")]
    assert decoder.done
    assert decoder.finish() == UpstreamFinish("stop", {"total_tokens": 5})


def test_chunk_decoder_tool_calls() -> None:
    decoder = ChunkDecoder()
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get", "arguments": ""},
    }
    assert decoder.feed(chunk({"content": None, "tool_calls": [first]})) == [
        UpstreamToolCall(0, "call_1", "get", "")
    ]
    assert decoder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})) == [
        UpstreamToolCall(0, None, None, "{}")
    ]


@pytest.mark.parametrize(
    "data",
    ["{not json", '"a string"', '{"error": {"message": "overloaded"}}', '{"object": "x"}'],
)
def test_chunk_decoder_errors(data: str) -> None:
    with pytest.raises(UpstreamError) as info:
        ChunkDecoder().feed(data)
    assert info.value.retryable


def test_truncated_stream_is_an_error_but_missing_done_after_finish_is_not() -> None:
    truncated = ChunkDecoder()
    truncated.feed(chunk({"content": "a"}))
    with pytest.raises(UpstreamError, match="without a finish_reason"):
        truncated.finish()
    no_done = ChunkDecoder()
    no_done.feed(chunk({}, "length"))
    assert no_done.finish() == UpstreamFinish("length", None)


@pytest.mark.parametrize("seed", range(5))
def test_event_decoder_emits_the_finish_at_done_and_ignores_what_follows(seed: int) -> None:
    body = (
        f"data: {chunk({'content': 'Hel'})}\n\n: keep-alive\n\n"
        f"data: {chunk({'content': 'lo'}, 'stop')}\r\n\r\n"
        "data: [DONE]\n\ndata: {after done}\n\n"
    ).encode()
    rng = random.Random(seed)
    decoder = EventDecoder()
    events = []
    start = 0
    while start < len(body):  # any split of the body into reads
        end = start + rng.randint(1, 40)
        events += decoder.feed(body[start:end])
        start = end
    assert events == [UpstreamToken("Hel"), UpstreamToken("lo"), UpstreamFinish("stop", None)]
    assert decoder.done and decoder.end() == []


def test_event_decoder_end_without_done() -> None:
    finished = EventDecoder()
    # The last event has no blank line after it: the body's end dispatches it.
    assert finished.feed(f"data: {chunk({'content': 'a'}, 'length')}".encode()) == []
    assert finished.end() == [UpstreamToken("a"), UpstreamFinish("length", None)]
    cut = EventDecoder()
    assert cut.feed(f"data: {chunk({'content': 'a'})}\n\n".encode()) == [UpstreamToken("a")]
    with pytest.raises(UpstreamError, match="without a finish_reason"):
        cut.end()


def test_event_decoder_returns_the_events_before_an_error_in_the_same_read() -> None:
    decoder = EventDecoder()
    body = (
        f"data: {chunk({'content': 'a'})}\n\ndata: {chunk({'content': 'b'})}\n\n"
        'data: {"error": {"message": "overloaded"}}\n\n'
        f"data: {chunk({'content': 'c'})}\n\n"
    ).encode()
    # The tokens before the error reach the client (and make the failure not retryable).
    assert decoder.feed(body) == [UpstreamToken("a"), UpstreamToken("b")]
    assert decoder.error is not None and "overloaded" in decoder.error.message
    assert decoder.feed(f"data: {chunk({'content': 'd'})}\n\n".encode()) == []
    with pytest.raises(UpstreamError, match="overloaded"):
        decoder.end()


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert parse_retry_after({}) is None


def test_retry_policy() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base_s=0.1, backoff_max_s=0.15, max_retry_after_s=5)
    rng = random.Random(1)
    first = policy.delay(0, None, rng)
    assert first is not None and 0.075 <= first <= 0.1
    second = policy.delay(1, None, rng)
    assert second is not None and second <= 0.15  # capped
    assert policy.delay(2, None, rng) is None  # bounded
    assert policy.delay(0, 3.0, rng) == 3.0  # Retry-After honoured
    assert policy.delay(0, 60.0, rng) is None  # too long to wait: give up


def test_status_error_retryability() -> None:
    assert UpstreamStatusError(429, "slow down").retryable
    assert UpstreamStatusError(503, "x").retryable
    assert not UpstreamStatusError(404, "model_not_found").retryable


def test_own_pool_unless_the_environment_proxies_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert UpstreamClient("http://127.0.0.1:9/v1").via_proxy is False
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert UpstreamClient("http://127.0.0.1:9/v1").via_proxy is False  # another scheme
    assert UpstreamClient("https://127.0.0.1:9/v1").via_proxy is True
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert UpstreamClient("http://provider.test/v1").via_proxy is True
    monkeypatch.setenv("NO_PROXY", "provider.test")
    assert UpstreamClient("http://provider.test/v1").via_proxy is False

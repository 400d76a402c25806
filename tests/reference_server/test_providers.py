"""Provider adapters, pure: each request built from the conversation, each decoder fed the
exact bytes of ``WIRE_FORMATS.md`` (sections 3 and 4: Anthropic's SDK fixtures, Ollama's
documented stream) in every split, and the ways a stream goes wrong. No sockets: the adapters
are exercised over HTTP against the live mock in ``test_integration_providers.py``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from reference_server.errors import UpstreamError
from reference_server.providers import (
    PROVIDER_NAMES,
    StreamDecoder,
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    UpstreamToolCall,
    base_url_problem,
    provider_named,
)
from reference_server.providers.anthropic import DEFAULT_MAX_TOKENS, MessagesDecoder
from reference_server.providers.ollama import NDJSONDecoder
from reference_server.upstream import error_message

DATA = Path(__file__).parent / "data"
ANTHROPIC_BASIC = (DATA / "anthropic_basic.sse").read_bytes()
ANTHROPIC_TOOL_USE = (DATA / "anthropic_tool_use.sse").read_bytes()
OLLAMA_CHAT = (DATA / "ollama_chat.ndjson").read_bytes()


def decode(decoder: StreamDecoder, body: bytes, seed: int | None = None) -> list[UpstreamEvent]:
    """The body fed in one read, or (with a seed) in random reads of 1-40 bytes, then ended."""
    rng = random.Random(seed)
    events: list[UpstreamEvent] = []
    start = 0
    while start < len(body):
        end = len(body) if seed is None else start + rng.randint(1, 40)
        events += decoder.feed(body[start:end])
        start = end
    return events + decoder.end()


def sse(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# --------------------------------------------------------------------------- Anthropic


@pytest.mark.parametrize("seed", [None, *range(5)])
def test_anthropic_text_stream(seed: int | None) -> None:
    events = decode(MessagesDecoder(), ANTHROPIC_BASIC, seed)
    assert events == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
        UpstreamToken("!"),
        UpstreamFinish("stop", {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}),
    ]


def test_anthropic_stream_is_done_at_message_stop() -> None:
    decoder = MessagesDecoder()
    events = decoder.feed(ANTHROPIC_BASIC + sse("content_block_delta", {"index": 0}))
    assert decoder.done and isinstance(events[-1], UpstreamFinish)
    assert decoder.end() == []


@pytest.mark.parametrize("seed", [None, *range(5)])
def test_anthropic_tool_use_stream(seed: int | None) -> None:
    # The SDK's fixture ends without a blank line after message_stop: end() dispatches it.
    events = decode(MessagesDecoder(), ANTHROPIC_TOOL_USE, seed)
    tokens = [e.content for e in events if isinstance(e, UpstreamToken)]
    calls = [e for e in events if isinstance(e, UpstreamToolCall)]
    assert "".join(tokens) == "I'll check the current weather in Paris for you."
    assert calls[0] == UpstreamToolCall(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", "")
    assert {c.call_index for c in calls} == {0}  # block 1 is the first tool call
    assert json.loads("".join(c.arguments for c in calls)) == {"location": "Paris"}
    assert events[-1] == UpstreamFinish(
        "tool_calls", {"prompt_tokens": 377, "completion_tokens": 65, "total_tokens": 442}
    )


def test_anthropic_prompt_tokens_count_cache_reads_and_writes() -> None:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 100}
    body = (
        sse("message_start", {"type": "message_start", "message": {"usage": usage}})
        + sse(
            "message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}}
        )
        + sse("message_stop", {"type": "message_stop"})
    )
    assert decode(MessagesDecoder(), body) == [
        UpstreamFinish(
            "length", {"prompt_tokens": 112, "completion_tokens": 3, "total_tokens": 115}
        )
    ]


def test_anthropic_tool_input_given_whole_in_the_block_start() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
    body = sse("content_block_start", {"index": 0, "content_block": block})
    assert MessagesDecoder().feed(body) == [UpstreamToolCall(0, "toolu_1", "f", '{"a": 1}')]


def test_anthropic_error_event_mid_stream_is_a_retryable_error_after_the_tokens() -> None:
    text_so_far = ANTHROPIC_BASIC.split(b"event: content_block_stop")[0]
    error = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    decoder = MessagesDecoder()
    events = decoder.feed(text_so_far + sse("error", error) + sse("content_block_delta", {}))
    assert events == [UpstreamToken("Hello"), UpstreamToken(" there"), UpstreamToken("!")]
    assert decoder.error is not None and decoder.error.retryable
    assert "overloaded_error: Overloaded" in decoder.error.message
    assert decoder.feed(ANTHROPIC_BASIC) == []
    with pytest.raises(UpstreamError, match="overloaded_error"):
        decoder.end()


def test_anthropic_skips_pings_comments_unnamed_and_unknown_events() -> None:
    noise = (
        b": keep-alive\n\n"
        # events without an event: line, even unreadable ones
        + b'data: {"type":"content_block_delta","index":0,'
        + b'"delta":{"type":"text_delta","text":"x"}}\n\n'
        + b"data: {not json\n\n"
        + sse("some_future_event", {"type": "some_future_event"})
        + sse(
            "content_block_delta",
            {"index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        )
    )
    body = ANTHROPIC_BASIC.replace(
        b"event: content_block_stop", noise + b"event: content_block_stop"
    )
    assert [e for e in decode(MessagesDecoder(), body) if isinstance(e, UpstreamToken)] == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
        UpstreamToken("!"),
    ]


def test_anthropic_stream_cut_before_its_stop_reason_is_an_error() -> None:
    cut = ANTHROPIC_BASIC.split(b"event: message_delta")[0]
    decoder = MessagesDecoder()
    assert len(decoder.feed(cut)) == 3
    with pytest.raises(UpstreamError, match="without a stop_reason") as info:
        decoder.end()
    assert info.value.retryable


def test_anthropic_stream_without_message_stop_ends_at_its_stop_reason() -> None:
    body = ANTHROPIC_BASIC.split(b"event: message_stop")[0]
    assert decode(MessagesDecoder(), body)[-1] == UpstreamFinish(
        "stop", {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    )


@pytest.mark.parametrize(
    "body",
    [b"event: message_start\ndata: {not json\n\n", b"event: content_block_start\ndata: []\n\n"],
)
def test_anthropic_malformed_event_is_an_error(body: bytes) -> None:
    decoder = MessagesDecoder()
    assert decoder.feed(body) == []
    assert decoder.error is not None and "malformed" in decoder.error.message


def test_anthropic_request_from_an_openai_conversation() -> None:
    provider = provider_named("anthropic")
    assert provider.path == "/messages"
    assert provider.headers("sk-ant") == {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant",
    }
    assert "x-api-key" not in provider.headers(None)
    call = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}}
    chat = {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi [[mock tokens=3]]"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "and?"}]},
            {"role": "assistant", "content": "So"},
        ],
        "temperature": 0.5,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get"}},
        "metadata": {"user_id": "u1", "mock_itl_ms": "5"},
    }
    assert provider.request_body(chat) == {
        "model": "claude-x",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi [[mock tokens=3]]"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "get", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "42"},
                    {"type": "text", "text": "and?"},
                ],
            },
            {"role": "assistant", "content": "So"},
        ],
        "stream": True,
        "temperature": 0.5,
        "tools": [{"name": "get", "input_schema": {"type": "object"}, "description": "d"}],
        "tool_choice": {"type": "tool", "name": "get"},
        "metadata": {"user_id": "u1"},
    }


@pytest.mark.parametrize(
    ("choice", "sent"), [("auto", "auto"), ("required", "any"), ("none", "none")]
)
def test_anthropic_tool_choice_names(choice: str, sent: str) -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}
    assert provider_named("anthropic").request_body(chat)["tool_choice"] == {"type": sent}


def test_anthropic_max_tokens_and_images() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    chat = {"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": [image]}]}
    body = provider_named("anthropic").request_body(chat)
    assert body["max_tokens"] == 7
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    ]


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
            },
            "must be a JSON object",
        ),
        ({"role": "narrator", "content": "x"}, "no Anthropic equivalent"),
        ({"role": "user", "content": 5}, "string or a list of parts"),
    ],
)
def test_anthropic_conversation_it_cannot_carry_is_not_retryable(
    message: dict[str, object], complaint: str
) -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}, message]}
    with pytest.raises(UpstreamError, match=complaint) as info:
        provider_named("anthropic").request_body(chat)
    assert not info.value.retryable


# ------------------------------------------------------------------------------ Ollama


@pytest.mark.parametrize("seed", [None, *range(5)])
def test_ollama_text_stream(seed: int | None) -> None:
    assert decode(NDJSONDecoder(), OLLAMA_CHAT, seed) == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
        UpstreamFinish("stop", {"prompt_tokens": 10, "completion_tokens": 17, "total_tokens": 27}),
    ]


def test_ollama_stream_is_done_at_the_done_line() -> None:
    decoder = NDJSONDecoder()
    events = decoder.feed(OLLAMA_CHAT + b'{"message":{"role":"assistant","content":"late"}}\n')
    assert decoder.done and isinstance(events[-1], UpstreamFinish)
    assert decoder.end() == []


def test_ollama_tool_calls_come_whole_with_object_arguments() -> None:
    line = {
        "model": "llama3.2",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_x", "function": {"name": "get_time", "arguments": {}}},
            ],
        },
        "done": False,
    }
    final = {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}
    body = (json.dumps(line) + "\n" + json.dumps(final)).encode()  # no newline at the end
    assert decode(NDJSONDecoder(), body) == [
        UpstreamToolCall(0, None, "get_weather", '{"city": "Paris"}'),
        UpstreamToolCall(1, "call_x", "get_time", "{}"),
        UpstreamFinish("tool_calls", None),
    ]


def test_ollama_error_line_mid_stream_is_a_retryable_error_after_the_tokens() -> None:
    first = OLLAMA_CHAT.split(b"\n")[0]
    decoder = NDJSONDecoder()
    events = decoder.feed(
        first + b'\n{"error":"an error was encountered while running the model"}\n'
    )
    assert events == [UpstreamToken("Hello")]
    assert decoder.error is not None and decoder.error.retryable
    assert "while running the model" in decoder.error.message


def test_ollama_blank_lines_are_skipped_and_a_cut_stream_is_an_error() -> None:
    lines = OLLAMA_CHAT.split(b"\n")
    decoder = NDJSONDecoder()
    assert decoder.feed(lines[0] + b"\n\n\r\n" + lines[1] + b"\n") == [
        UpstreamToken("Hello"),
        UpstreamToken(" there"),
    ]
    with pytest.raises(UpstreamError, match="without its done line"):
        decoder.end()


def test_ollama_malformed_line_is_an_error() -> None:
    decoder = NDJSONDecoder()
    decoder.feed(b"data: {}\n")
    assert decoder.error is not None and "malformed" in decoder.error.message


def test_ollama_request_from_an_openai_conversation() -> None:
    provider = provider_named("ollama")
    assert provider.path == "/chat"
    assert provider.headers(None) == {
        "Content-Type": "application/json",
        "Accept": "application/x-ndjson",
    }
    assert provider.headers("k")["Authorization"] == "Bearer k"
    call = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}}
    tools = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    chat = {
        "model": "llama3.2",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Look"}, image]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "max_tokens": 20,
        "temperature": 0.0,
        "tools": tools,
        "tool_choice": "auto",
        "metadata": {"a": "b"},
    }
    assert provider.request_body(chat) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Look", "images": ["AAAA"]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get", "arguments": {"a": 1}}}],
            },
            {"role": "tool", "content": "42", "tool_name": "get"},
        ],
        "stream": True,
        "options": {"num_predict": 20, "temperature": 0.0},
        "tools": tools,
    }


def test_ollama_takes_images_as_data_urls_only() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    chat = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    with pytest.raises(UpstreamError, match="data: URLs") as info:
        provider_named("ollama").request_body(chat)
    assert not info.value.retryable


# ------------------------------------------------------------------------- all of them


def test_openai_request_adds_the_stream_flags_only() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {"a": "b"}}
    assert provider_named("openai").request_body(chat) == {
        **chat,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_every_provider_has_an_adapter_and_a_fresh_decoder_per_response() -> None:
    for name in PROVIDER_NAMES:
        provider = provider_named(name)
        assert provider.name == name
        assert provider.decoder() is not provider.decoder()
    with pytest.raises(ValueError, match="unknown provider 'gemini': choose one of openai"):
        provider_named("gemini")


@pytest.mark.parametrize(
    ("name", "url", "complaint"),
    [
        ("anthropic", "https://api.anthropic.com", "includes the API's path"),
        ("ollama", "http://127.0.0.1:11434/", "includes the API's path"),
        ("ollama", "http://127.0.0.1:11434/v1", "use --provider openai"),
        ("openai", "http://127.0.0.1:9000/v1", None),
        ("openai", "https://gateway.example", None),
        ("anthropic", "http://127.0.0.1:9000/v1", None),
        ("ollama", "http://127.0.0.1:11434/api", None),
    ],
)
def test_base_url_problems(name: str, url: str, complaint: str | None) -> None:
    problem = base_url_problem(name, url)
    assert (problem is None) == (complaint is None)
    assert complaint is None or complaint in str(problem)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":{"message":"Invalid key","type":"invalid_request_error"}}', "Invalid key"),
        (
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            "Overloaded",
        ),
        (b'{"error":"model \\"x\\" not found, try pulling it first"}', 'model "x" not found'),
        (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
    ],
)
def test_error_message_of_each_provider(body: bytes, message: str) -> None:
    assert message in error_message(body)

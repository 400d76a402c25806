"""Ollama (``/api/chat``, ``/api/generate``, ``/api/tags``): exact bytes of the NDJSON lines, and
the ``ollama`` client against the live mock (streamed and not, tool calls, faults)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import ollama
import pytest

from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.formats.ollama import OllamaChat, OllamaGenerate
from mockllm.generation import Plan, build_plan

CHAT = OllamaChat()
GENERATE = OllamaGenerate()
MODEL = "gpt-4o-mini"
HI = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def plan(fmt: Any, body: dict[str, Any], **control: Any) -> Plan:
    request = fmt.parse(body, "")
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)


def lines(fmt: Any, p: Plan) -> bytes:
    return b"".join(e[1] for e in fmt.stream(p, {}, 0).events())


def test_exact_bytes_of_a_chat_stream() -> None:
    p = plan(CHAT, {"model": MODEL, "messages": HI}, text="Hi there.", itl_ms=10, ttft_ms=100)
    head = '{"model":"gpt-4o-mini","created_at":"1970-01-01T00:00:00.000000Z"'
    line = head + ',"message":{"role":"assistant","content":%s},"done":false}\n'
    counts = (
        '"total_duration":120000000,"load_duration":0,'
        f'"prompt_eval_count":{p.prompt_tokens},"prompt_eval_duration":100000000,'
        '"eval_count":3,"eval_duration":20000000}\n'
    )
    expected = (
        line % '"Hi"' + line % '" there"' + line % '"."'
        + head + ',"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
        + counts
    )  # fmt: skip
    assert lines(CHAT, p) == expected.encode()
    assert b"\n\n" not in lines(CHAT, p)


def test_generate_lines_carry_response() -> None:
    p = plan(GENERATE, {"model": MODEL, "prompt": "Hi", "options": {"num_predict": 2}})
    parsed = [json.loads(line) for line in lines(GENERATE, p).splitlines()]
    assert [x["done"] for x in parsed] == [False, False, True]
    assert parsed[-1]["done_reason"] == "length" and parsed[-1]["response"] == ""
    assert parsed[-1]["eval_count"] == 2


def test_tool_call_is_one_line_with_object_arguments() -> None:
    body = {"model": MODEL, "messages": HI, "tools": [WEATHER]}
    p = plan(CHAT, body, tool="get_weather", tool_arguments='{"city":"Paris"}')
    parsed = [json.loads(line) for line in lines(CHAT, p).splitlines()]
    assert len(parsed) == 2
    assert parsed[0]["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]


def test_tool_results_refer_to_the_numbered_calls() -> None:
    request = CHAT.parse(
        {
            "model": MODEL,
            "messages": [
                *HI,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "w", "arguments": {"c": 1}}}],
                },
                {"role": "tool", "content": "9", "tool_name": "w"},
            ],
        },
        "",
    )
    assert request.messages[-2]["tool_calls"][0]["function"] == {
        "name": "w",
        "arguments": '{"c":1}',
    }
    assert request.messages[-1] == {"role": "tool", "tool_call_id": "call_ollama_1", "content": "9"}


# -- the client against the live mock ----------------------------------------------------------


@pytest.fixture
def client(mock_url: str, admin: MockAdmin) -> Iterator[ollama.Client]:
    with ollama.Client(host=mock_url) as sdk:
        yield sdk


@pytest.fixture
def with_headers(mock_url: str, admin: MockAdmin) -> Iterator[Callable[..., ollama.Client]]:
    """A client sending the given headers (closed at teardown)."""
    made: list[ollama.Client] = []

    def make(**headers: str) -> ollama.Client:
        made.append(ollama.Client(host=mock_url, headers=headers))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def test_chat_streamed_and_not_give_the_same_text(client: ollama.Client, admin: MockAdmin) -> None:
    whole = client.chat(model=MODEL, messages=HI)
    parts = list(client.chat(model=MODEL, messages=HI, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content != ""
    assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count == 32
    assert not any(p.done for p in parts[:-1])
    entries = admin.requests()
    assert [e["format"] for e in entries] == ["ollama_chat"] * 2
    assert entries[1]["stream"] is True and entries[1]["text"] == whole.message.content


def test_generate_streamed_and_not(client: ollama.Client) -> None:
    whole = client.generate(model=MODEL, prompt="Hi", options={"num_predict": 5})
    parts = list(client.generate(model=MODEL, prompt="Hi", options={"num_predict": 5}, stream=True))
    assert "".join(p.response or "" for p in parts) == whole.response != ""
    assert whole.done_reason == "length" and whole.eval_count == 5


def test_tags_lists_the_models(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert "gpt-4o-mini" in names and "mock-fast" in names


def test_tool_call_round_trip(
    client: ollama.Client, with_headers: Callable[..., ollama.Client]
) -> None:
    caller = with_headers(**{"X-Mock-Tool": "get_weather"})
    parts = list(caller.chat(model=MODEL, messages=HI, tools=[WEATHER], stream=True))
    (call,) = parts[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments["city"], str)
    answer = client.chat(
        model=MODEL,
        tools=[WEATHER],
        messages=[
            *HI,
            parts[0].message.model_dump(exclude_none=True),
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
    )
    assert answer.message.content and answer.done_reason == "stop"


def test_status_fault_is_a_response_error(with_headers: Callable[..., ollama.Client]) -> None:
    client = with_headers(**{"X-Mock-Fault": "status=503"})
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as caught:
            list(client.chat(model=MODEL, messages=HI, stream=True)) if stream else client.chat(
                model=MODEL, messages=HI
            )
        assert caught.value.status_code == 503
        assert "server busy" in caught.value.error


def test_error_mid_stream_is_a_response_error(
    with_headers: Callable[..., ollama.Client], admin: MockAdmin
) -> None:
    client = with_headers(**{"X-Mock-Fault": "error_after=3"})
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:
        for part in client.chat(model=MODEL, messages=HI, stream=True):
            seen.append(part.message.content or "")
    assert caught.value.status_code == -1 and len(seen) == 3
    assert admin.requests()[-1]["outcome"] == "fault:error_after"


def test_malformed_line_and_abort(with_headers: Callable[..., ollama.Client]) -> None:
    with pytest.raises(json.JSONDecodeError):
        list(
            with_headers(**{"X-Mock-Fault": "malformed_after=2"}).chat(
                model=MODEL, messages=HI, stream=True
            )
        )
    with pytest.raises(httpx.RemoteProtocolError):
        list(
            with_headers(**{"X-Mock-Fault": "abort_after=2"}).chat(
                model=MODEL, messages=HI, stream=True
            )
        )


def test_bad_requests_get_ollama_errors(client: ollama.Client, mock_url: str) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="llama-unknown", messages=HI)
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "llama-unknown" not found, try pulling it first'
    bad = httpx.post(f"{mock_url}/api/chat", json={"model": MODEL, "messages": [{"role": "x"}]})
    assert bad.status_code == 400 and set(bad.json()) == {"error"}

"""Gemini (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``):
exact bytes of the encoder, and ``google-genai`` against the live mock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.formats.gemini import Gemini, gemini_method
from mockllm.generation import Plan, build_plan

FMT = Gemini()
MODEL = "gpt-4o-mini"
PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"
HI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def plan(body: dict[str, Any], path: str = PATH, **control: Any) -> Plan:
    request = FMT.parse(body, path)
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)


def test_paths() -> None:
    assert gemini_method(PATH) == "streamGenerateContent"
    assert gemini_method("/v1beta/models/m:generateContent") == "generateContent"
    assert gemini_method("/v1beta/models/m:countTokens") is None
    assert gemini_method("/v1/chat/completions") is None
    request = FMT.parse(HI, "/v1beta/models/gemini-2.0-flash:generateContent")
    assert request.model == "gemini-2.0-flash" and not request.stream
    assert FMT.parse(HI, PATH).stream


def test_exact_bytes_of_a_stream() -> None:
    p = plan(HI, text="Hi there.")
    rid = "gemini-" + p.completion_id.removeprefix("chatcmpl-")
    tail = f'"modelVersion":"gpt-4o-mini","responseId":"{rid}"}}\r\n\r\n'
    prompt = p.prompt_tokens
    chunk = (
        'data: {"candidates":[{"content":{"parts":[{"text":%s}],"role":"model"},"index":0}],'
        f'"usageMetadata":{{"promptTokenCount":{prompt},"totalTokenCount":{prompt}}},' + tail
    )
    last = (
        'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},'
        '"finishReason":"STOP","index":0}],'
        f'"usageMetadata":{{"promptTokenCount":{prompt},"candidatesTokenCount":3,'
        f'"totalTokenCount":{prompt + 3}}},' + tail
    )
    expected = chunk % '"Hi"' + chunk % '" there"' + chunk % '"."' + last
    assert b"".join(e[1] for e in FMT.stream(p, HI, 0).events()) == expected.encode()


def test_function_call_is_one_whole_part() -> None:
    body = {
        **HI,
        "tools": [{"functionDeclarations": [{"name": "w", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    p = plan(body, tool_arguments='{"city":"Paris"}')
    events = [json.loads(e[1][6:]) for e in FMT.stream(p, body, 0).events()]
    assert len(events) == 2
    (part,) = events[0]["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == "w" and part["functionCall"]["args"] == {"city": "Paris"}
    assert events[1]["candidates"][0]["finishReason"] == "STOP"


def test_contents_become_chat_messages() -> None:
    request = FMT.parse(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "w", "response": {"t": 9}}}],
                },
            ],
            "generation_config": {"max_output_tokens": 5},
        },
        PATH,
    )
    assert request.max_tokens == 5
    assert request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_gemini_1",
                    "type": "function",
                    "function": {"name": "w", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_gemini_1", "content": '{"t":9}'},
    )


# -- google-genai against the live mock --------------------------------------------------------


@pytest.fixture
def client(mock_url: str, admin: MockAdmin) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=mock_url, retry_options=types.HttpRetryOptions(attempts=1))
    with genai.Client(api_key="test", http_options=options) as sdk:
        yield sdk


def headers(**values: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=values))


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_streamed_and_not_give_the_same_text(client: genai.Client, admin: MockAdmin) -> None:
    whole = client.models.generate_content(model=MODEL, contents="Hi")
    parts = list(client.models.generate_content_stream(model=MODEL, contents="Hi"))
    assert "".join(p.text or "" for p in parts) == whole.text != ""
    assert parts[-1].candidates and parts[-1].candidates[0].finish_reason == "STOP"
    assert whole.usage_metadata and whole.usage_metadata.candidates_token_count == 32
    entries = admin.requests()
    assert [e["format"] for e in entries] == ["gemini"] * 2
    assert [e["stream"] for e in entries] == [False, True]
    assert entries[1]["text"] == whole.text


def test_max_output_tokens(client: genai.Client) -> None:
    config = types.GenerateContentConfig(max_output_tokens=3)
    response = client.models.generate_content(model=MODEL, contents="Hi", config=config)
    assert response.candidates and response.candidates[0].finish_reason == "MAX_TOKENS"
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 3


def test_function_call_round_trip(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[get_weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY
            )
        ),
    )
    parts = list(client.models.generate_content_stream(model=MODEL, contents="Hi", config=config))
    (call,) = parts[0].function_calls or []
    assert call.name == "get_weather" and isinstance((call.args or {})["city"], str)
    answer = client.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            types.Content(role="model", parts=[types.Part(function_call=call)]),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name="get_weather", response={"r": "sunny"})
                ],
            ),
        ],
    )
    assert answer.text


@pytest.mark.parametrize(
    ("status", "exception"), [(429, errors.ClientError), (503, errors.ServerError)]
)
def test_status_faults_raise_the_sdk_errors(
    client: genai.Client, status: int, exception: type[errors.APIError]
) -> None:
    config = headers(**{"X-Mock-Fault": f"status={status}"})
    with pytest.raises(exception) as caught:
        client.models.generate_content(model=MODEL, contents="Hi", config=config)
    assert caught.value.code == status
    with pytest.raises(exception):
        list(client.models.generate_content_stream(model=MODEL, contents="Hi", config=config))


def test_error_mid_stream_raises_server_error(client: genai.Client, admin: MockAdmin) -> None:
    seen: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        for part in client.models.generate_content_stream(
            model=MODEL, contents="Hi", config=headers(**{"X-Mock-Fault": "error_after=3"})
        ):
            seen.append(part.text or "")
    assert caught.value.code == 500 and len(seen) == 3
    assert admin.requests()[-1]["outcome"] == "fault:error_after"


def test_malformed_event_raises(client: genai.Client) -> None:
    with pytest.raises(errors.UnknownApiResponseError):
        list(
            client.models.generate_content_stream(
                model=MODEL, contents="Hi", config=headers(**{"X-Mock-Fault": "malformed_after=2"})
            )
        )


def test_bad_requests_get_gemini_errors(client: genai.Client, mock_url: str) -> None:
    with pytest.raises(errors.ClientError) as missing:
        client.models.generate_content(model="gemini-unknown", contents="Hi")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    bad = httpx.post(f"{mock_url}{PATH}?alt=sse", json={"contents": []})
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"

"""Anthropic Messages (``POST /v1/messages``): exact bytes of the encoder, and the ``anthropic``
SDK against the live mock (streamed and not, tool use, every fault as the SDK's exception)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.formats.anthropic import AnthropicMessages
from mockllm.generation import Plan, build_plan

FMT = AnthropicMessages()
MODEL = "mock-claude"
HI = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def plan(body: dict[str, Any], **control: Any) -> Plan:
    request = FMT.parse({"model": MODEL, "max_tokens": 100, "messages": HI, **body}, "")
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)


def wire(p: Plan) -> bytes:
    return b"".join(e[1] for e in FMT.stream(p, {}, 0).events())


def test_exact_bytes_of_a_text_stream() -> None:
    p = plan({}, text="Hi there.")
    mid = p.completion_id.removeprefix("chatcmpl-")
    usage = (
        f'"usage":{{"input_tokens":{p.prompt_tokens},"cache_creation_input_tokens":0,'
        '"cache_read_input_tokens":0,"output_tokens":0,"service_tier":"standard"}'
    )
    delta = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":%s}}\n\n'
    )
    expected = (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_' + mid + '",'
        '"type":"message","role":"assistant","content":[],"model":"mock-claude",'
        '"stop_reason":null,"stop_sequence":null,' + usage + '}}\n\n'
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
        'event: ping\ndata: {"type":"ping"}\n\n'
        + delta % '"Hi"' + delta % '" there"' + delta % '"."'
        + 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"output_tokens":3}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )  # fmt: skip
    assert wire(p) == expected.encode()
    script = FMT.stream(p, {}, 0)
    assert [e[2] for e in script.events()] == [1, 1, 1, 0]
    assert script.outcome == "completed"


def test_tool_use_stream_is_input_json_deltas_of_one_block() -> None:
    forced = {"tools": [WEATHER], "tool_choice": {"type": "any"}}
    p = plan(forced, tool_arguments='{"city":"Paris"}')
    events = [block.split(b"\n", 1) for block in wire(p).split(b"\n\n") if block]
    names = [name.removeprefix(b"event: ").decode() for name, _ in events]
    datas = [json.loads(data.removeprefix(b"data: ")) for _, data in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    assert datas[1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_" + p.choices[0].tool_call[0].removeprefix("call_"),  # type: ignore[index]
        "name": "get_weather",
        "input": {},
    }
    fragments = [d["delta"]["partial_json"] for d in datas if d["type"] == "content_block_delta"]
    assert "".join(fragments) == '{"city":"Paris"}' and len(fragments) > 1
    assert datas[-2]["delta"]["stop_reason"] == "tool_use"


def test_max_tokens_cuts_the_answer_with_stop_reason_max_tokens() -> None:
    p = plan({"max_tokens": 3}, tokens=50)
    assert len(p.choices[0].tokens) == 3
    assert b'"stop_reason":"max_tokens"' in wire(p)


def test_tool_result_becomes_a_tool_message() -> None:
    request = FMT.parse(
        {
            "model": MODEL,
            "max_tokens": 10,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "9"}],
                },
            ],
        },
        "",
    )
    assert request.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "9"},
    )


# -- the SDK against the live mock -------------------------------------------------------------


@pytest.fixture
def claude(mock_url: str, admin: MockAdmin) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock_url, api_key="test", max_retries=0) as sdk:
        yield sdk


def test_streamed_and_not_give_the_same_text_as_the_ledger(
    claude: anthropic.Anthropic, admin: MockAdmin
) -> None:
    whole = claude.messages.create(model=MODEL, max_tokens=100, messages=HI)
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert streamed == whole.content[0].text != ""
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens == 32
    entries = admin.requests()
    assert [e["format"] for e in entries] == ["anthropic_messages"] * 2
    assert [e["text"] for e in entries] == [streamed, streamed]
    assert [e["outcome"] for e in entries] == ["completed", "completed"]
    assert entries[0]["id"] == whole.id


def test_max_tokens_is_honoured(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=MODEL, max_tokens=4, messages=HI)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4


def test_tool_use_round_trip(claude: anthropic.Anthropic, admin: MockAdmin) -> None:
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=HI, tools=[WEATHER], tool_choice={"type": "any"}
    ) as stream:
        call = stream.get_final_message()
    (block,) = call.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert isinstance(block.input, dict) and isinstance(block.input["city"], str)
    assert call.stop_reason == "tool_use"
    answer = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *HI,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content[0].type == "text" and answer.stop_reason == "end_turn"
    assert admin.requests()[-1]["format"] == "anthropic_messages"


def test_agent_loop_ends_with_text_after_the_tool_result(claude: anthropic.Anthropic) -> None:
    """``X-Mock-Tool`` on every turn, as an agent's client sends it: the first turn calls the
    tool, the turn that carries its ``tool_result`` is answered with text (the loop default)."""
    ask = {"extra_headers": {"X-Mock-Tool": "get_weather"}, "model": MODEL, "max_tokens": 100}
    call = claude.messages.create(**ask, messages=HI, tools=[WEATHER])
    (block,) = call.content
    assert block.type == "tool_use" and call.stop_reason == "tool_use"
    result = {"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}
    answer = claude.messages.create(
        **ask,
        tools=[WEATHER],
        messages=[
            *HI,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
            {"role": "user", "content": [result]},
        ],
    )
    assert [b.type for b in answer.content] == ["text"] and answer.stop_reason == "end_turn"


def test_controls_apply(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL, max_tokens=100, messages=HI, extra_headers={"X-Mock-Text": "Exactly this."}
    )
    assert message.content[0].text == "Exactly this."  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_status_faults_raise_the_sdk_exception(
    claude: anthropic.Anthropic,
    status: int,
    exception: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    with pytest.raises(exception) as caught:
        claude.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=HI,
            stream=stream,
            extra_headers={"X-Mock-Fault": f"status={status}"},
        )
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type  # type: ignore[index]


def test_error_mid_stream_raises_api_status_error(
    claude: anthropic.Anthropic, admin: MockAdmin
) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        claude.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=HI,
            extra_headers={"X-Mock-Fault": "error_after=3"},
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert len(texts) == 3
    assert admin.requests()[-1]["outcome"] == "fault:error_after"


def fault(name: str) -> dict[str, str]:
    return {"X-Mock-Fault": name}


def test_abort_is_a_connection_error(claude: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIConnectionError),
        claude.messages.stream(
            model=MODEL, max_tokens=100, messages=HI, extra_headers=fault("abort_after=2")
        ) as stream,
    ):
        list(stream)


def test_malformed_event_raises_json_decode_error(claude: anthropic.Anthropic) -> None:
    with (
        pytest.raises(json.JSONDecodeError),
        claude.messages.stream(
            model=MODEL, max_tokens=100, messages=HI, extra_headers=fault("malformed_after=2")
        ) as stream,
    ):
        list(stream)


@pytest.mark.parametrize("fault", ["truncate_after=3", "no_done"])
def test_a_stream_cut_short_has_no_message_stop(claude: anthropic.Anthropic, fault: str) -> None:
    with claude.messages.create(
        model=MODEL, max_tokens=100, messages=HI, stream=True, extra_headers={"X-Mock-Fault": fault}
    ) as stream:
        kinds = [event.type for event in stream]
    assert "message_stop" not in kinds and kinds[0] == "message_start"
    assert ("message_delta" in kinds) == (fault == "no_done")


def test_split_events_still_parse(claude: anthropic.Anthropic) -> None:
    expected = claude.messages.create(model=MODEL, max_tokens=100, messages=HI)
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=HI, extra_headers={"X-Mock-Fault": "split_chunk"}
    ) as stream:
        assert "".join(stream.text_stream) == expected.content[0].text  # type: ignore[union-attr]


def test_bad_requests_get_anthropic_errors(claude: anthropic.Anthropic, mock_url: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model=MODEL, max_tokens=0, messages=HI)
    assert bad.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: expected an integer >= 1, got 0.",
        },
    }
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="claude-unknown", max_tokens=10, messages=HI)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    no_tokens = httpx.post(f"{mock_url}/v1/messages", json={"model": MODEL, "messages": HI})
    assert no_tokens.status_code == 400
    assert no_tokens.json()["error"]["message"] == "max_tokens: Field required."
    wrong_method = httpx.get(f"{mock_url}/v1/messages")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "error"

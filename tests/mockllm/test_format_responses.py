"""OpenAI Responses (``POST /v1/responses``): exact bytes of the encoder, and the ``openai`` SDK's
``responses`` against the live mock (streamed and not, tool calls, faults)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.formats.responses import OpenAIResponses
from mockllm.generation import Plan, build_plan

FMT = OpenAIResponses()
MODEL = "gpt-4o-mini"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def fault(spec: str) -> dict[str, str]:
    return {"X-Mock-Fault": spec}


def plan(body: dict[str, Any], **control: Any) -> Plan:
    request = FMT.parse(body, "")
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)


def parsed(data: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in data.split(b"\n\n"):
        if block:
            name, payload = block.split(b"\n", 1)
            out.append((name.removeprefix(b"event: ").decode(), json.loads(payload[6:])))
    return out


def test_exact_bytes_of_the_text_deltas() -> None:
    body = {"model": MODEL, "input": "Hi"}
    p = plan(body, text="Hi there.")
    events = list(FMT.stream(p, body, 7).events())
    msg = "msg_" + p.completion_id.removeprefix("chatcmpl-")
    delta = (
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        f'"item_id":"{msg}","output_index":0,"content_index":0,"delta":%s,"logprobs":[],'
        '"sequence_number":%d}\n\n'
    )
    # the first event carries the opening events before its delta
    assert events[0][1].endswith((delta % ('"Hi"', 4)).encode())
    assert events[1][1] == (delta % ('" there"', 5)).encode()
    assert events[2][1] == (delta % ('"."', 6)).encode()
    assert [e[2] for e in events] == [1, 1, 1, 0]


def test_events_in_order_with_dense_sequence_numbers() -> None:
    body = {"model": MODEL, "input": "Hi", "instructions": "Be brief."}
    p = plan(body, text="Hi there.")
    events = parsed(b"".join(e[1] for e in FMT.stream(p, body, 7).events()))
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["instructions"] == "Be brief."
    assert final["output"][0]["content"][0]["text"] == "Hi there."
    assert final["usage"]["output_tokens"] == 3


def test_tool_call_is_argument_deltas_of_a_function_call_item() -> None:
    body = {"model": MODEL, "input": "Hi", "tools": [WEATHER], "tool_choice": "required"}
    p = plan(body, tool_arguments='{"city":"Paris"}')
    events = parsed(b"".join(e[1] for e in FMT.stream(p, body, 7).events()))
    names = [name for name, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"city":"Paris"}'
    assert events[-1][1]["response"]["output"][0]["name"] == "get_weather"


def test_max_output_tokens_ends_incomplete() -> None:
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 3}
    events = parsed(b"".join(e[1] for e in FMT.stream(plan(body), body, 7).events()))
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_input_items_become_chat_messages() -> None:
    request = FMT.parse(
        {
            "model": MODEL,
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "9"},
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
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "9"},
    )


# -- the SDK against the live mock -------------------------------------------------------------


def test_streamed_and_not_give_the_same_text(client: openai.OpenAI, admin: MockAdmin) -> None:
    whole = client.responses.create(model=MODEL, input="Hi")
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == whole.output_text != ""
    assert whole.status == final.status == "completed"
    assert whole.usage is not None and whole.usage.output_tokens == 32
    entries = admin.requests()
    assert [e["format"] for e in entries] == ["openai_responses"] * 2
    assert [e["text"] for e in entries] == [whole.output_text] * 2
    assert entries[0]["id"] == whole.id


def test_raw_stream_numbers_events_from_zero(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=MODEL, input="Hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Hi", tools=[WEATHER], tool_choice="required"
    ) as stream:
        call = stream.get_final_response().output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    answer = client.responses.create(
        model=MODEL,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Hi"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )  # fmt: skip
    assert answer.output_text and answer.status == "completed"


def test_max_output_tokens_is_honoured(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Hi", max_output_tokens=4)
    assert response.status == "incomplete"
    assert response.usage is not None and response.usage.output_tokens == 4


@pytest.mark.parametrize(
    ("status", "exception"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError)],
)
@pytest.mark.parametrize("stream", [True, False])
def test_status_faults_raise_the_sdk_exception(
    client: openai.OpenAI, status: int, exception: type[openai.APIStatusError], stream: bool
) -> None:
    with pytest.raises(exception):
        client.responses.create(
            model=MODEL,
            input="Hi",
            stream=stream,
            extra_headers={"X-Mock-Fault": f"status={status}"},
        )


def test_error_mid_stream_is_an_error_event(client: openai.OpenAI, admin: MockAdmin) -> None:
    events = list(
        client.responses.create(
            model=MODEL, input="Hi", stream=True, extra_headers={"X-Mock-Fault": "error_after=2"}
        )
    )
    assert events[-1].type == "error" and events[-1].code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with (
        pytest.raises(RuntimeError, match=r"response\.completed"),
        client.responses.stream(
            model=MODEL, input="Hi", extra_headers={"X-Mock-Fault": "error_after=2"}
        ) as stream,
    ):
        stream.get_final_response()
    assert admin.requests()[-1]["outcome"] == "fault:error_after"


def test_abort_is_a_connection_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        list(
            client.responses.create(
                model=MODEL,
                input="Hi",
                stream=True,
                extra_headers={"X-Mock-Fault": "abort_after=2"},
            )
        )


def test_bad_requests_get_openai_errors(client: openai.OpenAI, mock_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input=[{"role": "robot", "content": "x"}])
    assert bad.value.code == "invalid_value"
    missing = httpx.post(f"{mock_url}/v1/responses", json={"model": MODEL})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_required_parameter"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-unknown", input="Hi")

"""Tools, n, models, rules, the in-prompt directive and timing, through the openai SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from mockllm.client import MockAdmin

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "noop", "parameters": {}}},
]


def test_forced_tool_call_streams_id_name_then_argument_fragments(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    fragments: list[str] = []
    first = None
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for call in choice.delta.tool_calls or []:
            if first is None:
                first = call
            else:
                assert call.id is None and call.function is not None
            assert call.function is not None
            fragments.append(call.function.arguments or "")
        finish = choice.finish_reason or finish
    assert first is not None and first.id and first.id.startswith("call_")
    assert first.function is not None and first.function.name == "get_weather"
    assert len([f for f in fragments if f]) >= 3
    arguments = json.loads("".join(fragments))
    assert set(arguments) == {"city", "unit", "days"}
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert finish == "tool_calls"


def test_stream_helper_assembles_the_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls
    assert call is not None
    assert json.loads(call[0].function.arguments)["city"]


def test_non_streamed_tool_call_matches_the_stream(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required"}
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **kwargs
    )
    streamed = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].function
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.arguments == streamed
    assert completion.choices[0].finish_reason == "tool_calls"


def test_rule_chooses_a_tool_with_exact_arguments(client: openai.OpenAI, admin: MockAdmin) -> None:
    admin.add_rule(
        match={"prompt": "Paris"},
        respond={"tool": "get_weather", "tool_arguments": {"city": "Paris"}},
    )
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS)
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}


def test_n_choices_stream_interleaved_with_dense_indexes(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, n=3) as stream:
        final = stream.get_final_completion()
    texts = [c.message.content for c in final.choices]
    assert len(set(texts)) == 3
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    assert [c.message.content for c in completion.choices] == texts


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert {"mock-instant", "mock-fast", "mock-realistic", "gpt-4o-mini"} <= set(ids)
    assert client.models.retrieve("mock-fast").id == "mock-fast"


def test_rules_text_nth_and_crud(client: openai.OpenAI, admin: MockAdmin) -> None:
    rule = admin.add_rule(id="second", match={"nth": 2}, respond={"text": "Second answer."})
    assert rule["id"] == "second"
    answers = [
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        .choices[0]
        .message.content
        for _ in range(3)
    ]
    assert answers[1] == "Second answer."
    assert answers[0] != "Second answer." and answers[2] != "Second answer."
    assert admin.requests()[1]["rule_id"] == "second"
    listed = admin.rules()
    assert listed[0]["seen"] == 3 and listed[0]["applied"] == 1
    admin.delete_rule("second")
    assert admin.rules() == []


def test_echo_mode_by_rule(client: openai.OpenAI, admin: MockAdmin) -> None:
    admin.add_rule(match={"model": "mock-*"}, respond={"mode": "echo"})
    completion = client.chat.completions.create(model="mock-instant", messages=MESSAGES)
    assert completion.choices[0].message.content == MESSAGES[0]["content"]


def test_directive_is_opt_in_and_stripped_from_echo(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    prompt = "Repeat after me [[mock mode=echo tokens=3]] please."
    messages: list[Any] = [{"role": "user", "content": prompt}]
    off = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert off.choices[0].message.content != prompt  # not honoured: seeded text as usual
    admin.configure(directives=True)
    on = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert on.choices[0].message.content == "Repeat after me please."


def test_directive_beats_headers(client: openai.OpenAI, admin: MockAdmin) -> None:
    admin.configure(directives=True)
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": '[[mock text="From the prompt."]] hi'}],
        extra_headers={"X-Mock-Text": "From the header."},
    )
    assert completion.choices[0].message.content == "From the prompt."


def test_timing_within_a_tolerance_band(client: openai.OpenAI) -> None:
    start = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Mock-Ttft-Ms": "150", "X-Mock-Itl-Ms": "20", "X-Mock-Tokens": "20"},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 20
    ttft = arrivals[0]
    total = arrivals[-1] - arrivals[0]
    # Scheduled: first token at 150 ms, last 19 * 20 = 380 ms later. Wide bands: shared box.
    assert 0.13 < ttft < 0.6
    assert 0.34 < total < 0.9


def test_realistic_profile_by_model_name(mock_url: str) -> None:
    preview = httpx.post(
        f"{mock_url}/_mock/preview", json={"model": "mock-realistic", "messages": MESSAGES}
    ).json()
    assert preview["profile"] == "realistic"
    assert preview["timing"]["ttft_ms"] == 390.0
    times = preview["choices"][0]["times"]
    assert 0.38 < times[0] < 0.4 and 0.37 < times[-1] - times[0] < 0.40


def test_large_answers_are_built_off_the_loop_and_stay_deterministic(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    headers = {"X-Mock-Tokens": "6000"}
    preview = admin.preview({"model": "gpt-4o-mini", "messages": MESSAGES}, headers=headers)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 6000
    assert pieces == preview["tokens"]
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
    )
    assert completion.choices[0].message.content == "".join(pieces)
    assert admin.requests()[0]["id"] != admin.requests()[1]["id"]

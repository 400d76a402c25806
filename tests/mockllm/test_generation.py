"""mockllm.generation and formats.openai_chat: plans and the exact bytes of a stream."""

from __future__ import annotations

import json
from typing import Any

from mockllm.content import LoremAnswer
from mockllm.control import resolve
from mockllm.generation import Action, Plan, body_script, build_plan, stream_script
from mockllm.lazyseq import LazyList
from mockllm.request import parse_chat_request

BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def plan(body: dict[str, Any] | None = None, seed: int = 0, **control: Any) -> Plan:
    request = parse_chat_request({**BODY, **(body or {})})
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=seed, sequence=1)


def events(script_bytes: bytes) -> list[Any]:
    out: list[Any] = []
    for event in script_bytes.split(b"\n\n"):
        if event:
            assert event.startswith(b"data: ")
            payload = event[6:]
            out.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return out


def test_exact_bytes_of_a_short_stream() -> None:
    p = plan(text="Hi there.")
    script = stream_script(p, created=1700000000, include_usage=False)
    head = (
        f'data: {{"id":"{p.completion_id}","object":"chat.completion.chunk","created":1700000000,'
        '"model":"gpt-4o-mini","system_fingerprint":"fp_mockllm","choices":'
    )
    tail = ',"logprobs":null,"finish_reason":null}]}\n\n'
    expected = (
        head + '[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}' + tail
        + head + '[{"index":0,"delta":{"content":"Hi"}' + tail
        + head + '[{"index":0,"delta":{"content":" there"}' + tail
        + head + '[{"index":0,"delta":{"content":"."}' + tail
        + head + '[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
        + "data: [DONE]\n\n"
    )  # fmt: skip
    assert b"".join(e[1] for e in script.events()) == expected.encode()
    assert [e[2] for e in script.events()] == [1, 1, 1, 0]
    assert script.outcome == "completed"


def test_same_inputs_same_plan_other_seed_other_text() -> None:
    assert plan(seed=1).choices == plan(seed=1).choices
    assert plan(seed=1).choices[0].text != plan(seed=2).choices[0].text
    assert plan({"seed": 5}).choices[0].text != plan({"seed": 6}).choices[0].text


def test_stream_and_body_carry_the_same_text() -> None:
    p = plan({"n": 2})
    stream = b"".join(e[1] for e in stream_script(p, created=0, include_usage=True).events())
    texts = ["", ""]
    for chunk in events(stream)[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    body = json.loads(body_script(p, created=0).event[1])
    assert texts == [c["message"]["content"] for c in body["choices"]]
    assert texts[0] != texts[1]


def test_usage_chunk_comes_after_finish_and_before_done() -> None:
    p = plan({"max_tokens": 3})
    stream = b"".join(e[1] for e in stream_script(p, created=0, include_usage=True).events())
    parsed = events(stream)
    assert parsed[-1] == "[DONE]"
    assert parsed[-2]["choices"] == [] and parsed[-2]["usage"]["completion_tokens"] == 3
    assert parsed[-3]["choices"][0]["finish_reason"] == "length"


def test_tool_call_fragments_reassemble() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    p = plan({"tools": tools, "tool_choice": "required"})
    parsed = events(
        b"".join(e[1] for e in stream_script(p, created=0, include_usage=False).events())
    )
    first = parsed[0]["choices"][0]["delta"]
    assert first["content"] is None
    call = first["tool_calls"][0]
    assert (call["index"], call["type"], call["function"]) == (
        0,
        "function",
        {"name": "get_weather", "arguments": ""},
    )
    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in parsed[1:-2]
    ]
    assert len(fragments) > 3
    assert set(json.loads("".join(fragments))) == {"city"}
    assert parsed[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_fault_cuts() -> None:
    p = plan(tokens=10, fault="abort_after=3")
    script = stream_script(p, created=0, include_usage=False)
    assert sum(e[2] for e in script.events()) == 3
    assert list(script.events())[-1][3] is Action.ABORT
    assert script.outcome == "fault:abort_after"

    script = stream_script(plan(tokens=10, fault="error_after=2"), created=0, include_usage=False)
    assert json.loads(list(script.events())[-1][1][6:])["error"]["type"] == "server_error"
    assert not any(b"[DONE]" in e[1] for e in script.events())

    script = stream_script(
        plan(tokens=10, fault="malformed_after=4"), created=0, include_usage=False
    )
    assert sum(e[2] for e in script.events()) == 4
    last = list(script.events())[-1][1]
    assert last.endswith(b"\n\n")
    try:
        json.loads(last[6:])
    except ValueError:
        pass
    else:
        raise AssertionError("the malformed chunk parsed as JSON")

    script = stream_script(plan(tokens=4, fault="no_done"), created=0, include_usage=False)
    assert not any(b"[DONE]" in e[1] for e in script.events())
    assert script.outcome == "fault:no_done"

    script = stream_script(plan(tokens=4, fault="split_chunk=2"), created=0, include_usage=False)
    assert [e[3] for e in script.events()] == [
        Action.WRITE,
        Action.WRITE,
        Action.SPLIT,
        Action.WRITE,
        Action.WRITE,
    ]


def test_timing_and_chunks_follow_the_control() -> None:
    p = plan(tokens=6, ttft_ms=100, itl_ms=10, tokens_per_chunk=2)
    script = stream_script(p, created=0, include_usage=False)
    content = [e for e in script.events() if e[2]]
    assert [e[2] for e in content] == [2, 2, 2]
    assert [round(e[0], 3) for e in content] == [0.11, 0.13, 0.15]


def test_echo_mode_and_exact_text() -> None:
    assert plan(mode="echo").choices[0].text == "Hi"
    assert plan(text="Exactly this.").choices[0].text == "Exactly this."
    assert len(plan(tokens=17).choices[0].tokens) == 17


def test_the_first_event_waits_for_one_slice_not_the_whole_answer() -> None:
    p = plan(tokens=100_000, seed=424242, itl_ms=20, jitter_ms=2)
    (choice,) = p.choices
    tokens, times = choice.tokens, choice.times
    assert isinstance(tokens, LazyList) and isinstance(times, LazyList)  # 100,000: not shared
    assert len(tokens) == 100_000 and p.completion_tokens == 100_000
    assert tokens.made == 0 and times.made == 0
    script = stream_script(p, created=0, include_usage=True)
    _, data, ntok, _ = next(script.events())
    assert b'"role":"assistant"' in data and ntok == 1
    assert tokens.made < 200 and times.made <= 64
    assert script.outcome == "completed"


def test_usage_and_outcome_are_known_before_anything_is_built() -> None:
    p = plan({"max_tokens": 50_000, "stream": True}, tokens=60_000, fault="truncate_after=70000")
    script = stream_script(p, created=0, include_usage=True)
    assert p.usage["completion_tokens"] == 50_000 and p.choices[0].finish_reason == "length"
    assert script.outcome == "completed"  # the cut lies beyond the answer
    tokens = p.choices[0].tokens
    assert isinstance(tokens, LazyList | LoremAnswer) and tokens.made == 0


LOOP_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {}}},
    {"type": "function", "function": {"name": "search", "parameters": {}}},
]


def after_call(name: str) -> dict[str, Any]:
    """A request of an agent loop whose last message is the result of a call of ``name``."""
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny."},
    ]
    return {"messages": messages, "tools": LOOP_TOOLS}


def test_a_requested_call_after_its_own_result_answers_text() -> None:
    assert plan({"tools": LOOP_TOOLS}, tool="get_weather").choices[0].finish_reason == (
        "tool_calls"
    )
    answer = plan(after_call("get_weather"), tool="get_weather", text="Sunny in Paris.")
    assert answer.choices[0].tool_call is None
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("Sunny in Paris.", "stop")
    # Another tool's result does not stop the call, nor does tool_repeat after its own.
    other = plan(after_call("search"), tool="get_weather").choices[0].tool_call
    assert other is not None and other[1] == "get_weather"
    again = plan(after_call("get_weather"), tool="get_weather", tool_repeat=True)
    assert again.choices[0].tool_call is not None


def test_a_call_the_request_forces_is_made_even_after_its_result() -> None:
    # tool_choice is the client's own demand: the real API obeys it on every turn too.
    forced = {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    p = plan({**after_call("get_weather"), **forced})
    assert p.choices[0].tool_call is not None
    assert (
        plan({**after_call("get_weather"), **forced}, tool="get_weather").choices[0].tool_call
        is not None
    )

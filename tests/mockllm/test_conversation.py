"""mockllm.conversation: a request's messages summarized for agent loops, and conditions on it."""

from __future__ import annotations

from typing import Any

import pytest

from mockllm.conversation import (
    Condition,
    Conversation,
    ToolResult,
    answered_tool,
    parse_condition,
    parse_when,
    summarize,
)
from mockllm.errors import InvalidRequest

USER = {"role": "user", "content": "Weather in Paris and Rome?"}


def call(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def calls(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [call(*p) for p in pairs]}


def result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "Sunny."}


def test_a_first_request_is_turn_0_without_tool_results() -> None:
    c = summarize([{"role": "system", "content": "Be brief."}, USER], ["get_weather"])
    assert c == Conversation(turn=0, tools=frozenset({"get_weather"}))
    assert not c.last_is_tool_result and not c.has_tool_result


def test_a_tool_result_names_its_call_and_function() -> None:
    c = summarize([USER, calls(("call_1", "get_weather")), result("call_1")])
    assert c.turn == 1 and c.has_tool_result
    assert c.last_tool_results == (ToolResult("call_1", "get_weather"),)
    assert c.has_result_for("call_1") and c.has_result_for("get_weather")
    assert not c.has_result_for("search")


def test_parallel_calls_are_one_turn_and_all_their_results_count() -> None:
    messages = [USER, calls(("a", "get_weather"), ("b", "get_time")), result("a"), result("b")]
    c = summarize(messages)
    assert c.turn == 1
    assert [r.name for r in c.last_tool_results] == ["get_weather", "get_time"]
    assert c.has_result_for("get_weather") and c.has_result_for("b")


def test_only_the_results_the_request_ends_with_are_its_last() -> None:
    messages = [
        USER,
        calls(("a", "get_weather")),
        result("a"),
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    c = summarize(messages)
    assert c.turn == 2 and c.has_tool_result
    assert not c.last_is_tool_result and not c.has_result_for("get_weather")


def test_a_result_whose_call_is_unknown_keeps_its_id_and_a_legacy_function_its_name() -> None:
    c = summarize([USER, result("call_x")])
    assert c.last_tool_results == (ToolResult("call_x", None),)
    legacy = summarize([USER, {"role": "function", "name": "get_weather", "content": "ok"}])
    assert legacy.last_tool_results == (ToolResult(None, "get_weather"),)
    assert str(c.last_tool_results[0]) == "call 'call_x'"
    assert str(legacy.last_tool_results[0]) == "'get_weather'"
    assert str(ToolResult(None, None)) == "an unnamed call"


def test_malformed_tool_calls_are_skipped_not_fatal() -> None:
    broken = {"role": "assistant", "tool_calls": ["x", {"id": 3}, {"id": "c", "function": 1}]}
    assert summarize([USER, broken, result("c")]).last_tool_results == (ToolResult("c", None),)


def test_answered_tool_is_the_loop_default_question() -> None:
    messages = [USER, calls(("call_1", "get_weather")), result("call_1")]
    assert answered_tool("get_weather", messages)
    assert not answered_tool("search", messages)
    assert not answered_tool("get_weather", messages[:2])


LOOP = summarize(
    [USER, calls(("call_1", "get_weather")), result("call_1")], ["get_weather", "search"]
)


@pytest.mark.parametrize(
    ("raw", "matches"),
    [
        ({}, True),
        ({"turn": 1}, True),
        ({"turn": [0, 2]}, False),
        ({"last_is_tool_result": True}, True),
        ({"last_is_tool_result": False}, False),
        ({"tool_result_for": "get_weather"}, True),
        ({"tool_result_for": "call_1"}, True),
        ({"tool_result_for": "search"}, False),
        ({"has_tool_result": False}, False),
        ({"tools_offered": "search"}, True),
        ({"tools_offered": ["search", "get_weather"]}, True),
        ({"tools_offered": ["search", "book"]}, False),
        ({"turn": 1, "tool_result_for": "get_weather", "tools_offered": "search"}, True),
    ],
)
def test_conditions_all_must_hold(raw: dict[str, Any], matches: bool) -> None:
    assert parse_condition(raw, "match.").matches(LOOP) is matches


def test_mismatches_say_what_the_conversation_is() -> None:
    condition = parse_condition(
        {
            "turn": 0,
            "last_is_tool_result": False,
            "tool_result_for": "search",
            "has_tool_result": False,
            "tools_offered": ["book", "search"],
        },
        "match.",
    )
    assert condition.mismatches(LOOP) == [
        "turn 1 != 0",
        "the last message is a tool result, for 'get_weather' (call 'call_1')",
        "the last tool result is for 'get_weather' (call 'call_1'), not 'search'",
        "the conversation has a tool result",
        "tool(s) 'book' not offered (offered: 'get_weather', 'search')",
    ]
    first = Conversation()
    assert parse_condition(
        {"turn": [1, 2], "last_is_tool_result": True, "tool_result_for": "x", "tools_offered": "x"},
        "",
    ).mismatches(first) == [
        "turn 0 not in [1, 2]",
        "the last message is not a tool result",
        "no tool result for 'x' at the end of the conversation",
        "tool(s) 'x' not offered (offered: none)",
    ]


def test_a_condition_round_trips_through_json() -> None:
    raw = {"turn": [0, 3], "tool_result_for": "f", "has_tool_result": True, "tools_offered": ["f"]}
    condition = parse_condition(raw, "")
    assert condition.to_json() == raw
    assert parse_condition(condition.to_json(), "") == condition
    assert Condition().empty and not condition.empty


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ({"turn": -1}, "match.turn must be an integer >= 0"),
        ({"turn": []}, "match.turn must be an integer >= 0 or a non-empty list"),
        ({"turn": True}, "match.turn must be"),
        ({"turn": "0"}, "match.turn must be"),
        ({"last_is_tool_result": "yes"}, "match.last_is_tool_result must be true or false"),
        ({"has_tool_result": 1}, "match.has_tool_result must be true or false"),
        ({"tool_result_for": ""}, "match.tool_result_for must be a call id or function name"),
        ({"tools_offered": [1]}, "match.tools_offered must be a function name"),
        ({"tools_offered": []}, "match.tools_offered must be"),
    ],
)
def test_bad_conditions_name_the_field(raw: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_condition(raw, "match.")
    assert said in info.value.message


def test_when_text_is_pairs_with_list_values() -> None:
    condition = parse_when(
        " turn=0,2 ; last_is_tool_result=FALSE;tools_offered=a,b;tool_result_for=call_1;",
        "X-Mock-When",
    )
    assert condition == Condition(
        turn=frozenset({0, 2}),
        last_is_tool_result=False,
        tool_result_for="call_1",
        tools_offered=frozenset({"a", "b"}),
    )
    assert parse_when({"has_tool_result": True}, "metadata.mock_when") == Condition(
        has_tool_result=True
    )


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "X-Mock-When must be at least one key=value condition"),
        ("turn", "X-Mock-When must be key=value pairs separated by ';'"),
        ("turns=1", "Unknown condition(s) 'turns' in X-Mock-When; known: turn,"),
        ("turn=x", "X-Mock-When condition turn must be an integer >= 0 or a list such as 0,2"),
        ("turn=1,", "X-Mock-When condition turn must be an integer"),
        ("has_tool_result=yes", "X-Mock-When condition has_tool_result must be true or false"),
        ("tools_offered=a,", "X-Mock-When condition tools_offered must be a function name"),
        (3, "X-Mock-When must be a string"),
        ({"turn": 0, "nth": 1}, "Unknown condition(s) 'nth' in X-Mock-When"),
        ({"turn": "0"}, "X-Mock-When condition turn must be an integer >= 0"),
    ],
)
def test_bad_when_values_say_what_to_write(value: Any, said: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_when(value, "X-Mock-When")
    assert said in info.value.message
    assert info.value.param == "X-Mock-When"

"""mockllm.control: sources of behaviour and their priority; the in-prompt directive."""

from __future__ import annotations

import pytest

from mockllm.control import extract_directives, header_overrides, metadata_overrides, resolve
from mockllm.conversation import Condition, Conversation, ToolResult, parse_when
from mockllm.errors import InvalidRequest
from mockllm.faults import Faults


def test_headers_are_case_insensitive_and_typed() -> None:
    got = header_overrides(
        [
            ("X-Mock-Ttft-Ms", "120"),
            ("x-mock-tokens", "7"),
            ("X-MOCK-FAULT", "no_done"),
            ("X-Mock-Text", "Hi there"),
            ("Authorization", "Bearer x"),
        ]
    )
    assert got == {"ttft_ms": 120.0, "tokens": 7, "fault": "no_done", "text": "Hi there"}


@pytest.mark.parametrize(
    "header",
    [
        ("X-Mock-Tokens", "many"),
        ("X-Mock-Tokens", "-1"),
        ("X-Mock-Itl-Ms", "nan"),
        ("X-Mock-Profile", "glacial"),
        ("X-Mock-Fault", "explode"),
        ("X-Mock-Colour", "red"),
        ("X-Mock-Mode", "shout"),
    ],
)
def test_bad_header_values_are_invalid_requests(header: tuple[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        header_overrides([header])


def test_priority_directive_over_headers_over_rule_over_model_over_default() -> None:
    control = resolve(model="mock-fast", default_profile="instant")
    assert control.profile == "fast"
    assert control.timing.itl_ms == 5.0
    control = resolve(
        model="mock-fast",
        default_profile="instant",
        rule={"itl_ms": 30.0, "tokens": 3, "fault": "no_done"},
        rule_id="r1",
        headers={"itl_ms": 40.0},
        directive={"tokens": 9},
    )
    assert control.timing.itl_ms == 40.0
    assert control.timing.ttft_ms == 20.0  # the model's profile still supplies the rest
    assert control.tokens == 9
    assert control.faults == Faults(no_done=True)
    assert control.rule_id == "r1"


def test_a_higher_source_can_cancel_a_rule_fault() -> None:
    control = resolve(
        model="m",
        default_profile="instant",
        rule={"fault": "status=500"},
        headers={"fault": "none"},
    )
    assert control.faults == Faults()


def test_directive_is_parsed_and_stripped() -> None:
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello [[mock tokens=4 fault=stall_after=2;seconds=1]] there"},
        {"role": "user", "content": [{"type": "text", "text": '[[mock text="Fixed answer"]] Hi'}]},
    )
    cleaned, found = extract_directives(messages)
    assert found == {"tokens": 4, "fault": "stall_after=2;seconds=1", "text": "Fixed answer"}
    assert cleaned[1]["content"] == "Hello there"
    assert cleaned[2]["content"] == [{"type": "text", "text": "Hi"}]
    assert cleaned[0] is messages[0]


@pytest.mark.parametrize(
    "content", ["[[mock tokens]]", "[[mock tokens=x]]", '[[mock text="open]]', "[[mock a=1]]"]
)
def test_bad_directives_are_invalid_requests(content: str) -> None:
    with pytest.raises(InvalidRequest):
        extract_directives(({"role": "user", "content": content},))


def test_directives_are_found_in_time_linear_in_the_prompt() -> None:
    # Many openings and no "]": the regex this replaced scanned from each opening to the end,
    # 44 s of the event loop for these 112 KB.
    import time

    prompt = "[[mock " * 16_000
    start = time.perf_counter()
    cleaned, found = extract_directives(({"role": "user", "content": prompt},))
    assert time.perf_counter() - start < 1.0
    assert (cleaned[0]["content"], found) == (prompt, {})


@pytest.mark.parametrize(
    ("text", "stripped", "found"),
    [
        ("a [[mock tokens=2]] b [[mock: tokens=3]]", "a b", {"tokens": 3}),
        ("[[mock tokens=2] x]] [[mock tokens=4]]", "[[mock tokens=2] x]]", {"tokens": 4}),
        ("x [[mock tokens=6", "x [[mock tokens=6", {}),
    ],
)
def test_what_counts_as_a_directive(text: str, stripped: str, found: dict[str, int]) -> None:
    cleaned, values = extract_directives(({"role": "user", "content": text},))
    assert (cleaned[0]["content"], values) == (stripped, found)


def test_the_same_sources_without_a_rule_give_the_same_control_object() -> None:
    first = resolve(model="gpt-4o-mini", default_profile="fast", headers={"tokens": 5})
    again = resolve(model="gpt-4o-mini", default_profile="fast", headers={"tokens": 5})
    assert again is first  # kept: a frozen value, shared
    other = resolve(model="gpt-4o-mini", default_profile="fast", headers={"tokens": 6})
    assert other is not first and other.tokens == 6
    ruled = resolve(model="gpt-4o-mini", default_profile="fast", rule={"tokens": 5}, rule_id="r1")
    assert ruled.rule_id == "r1" and ruled == resolve(
        model="gpt-4o-mini", default_profile="fast", rule={"tokens": 5}, rule_id="r1"
    )
    # An unhashable value is resolved each time, not refused.
    assert resolve(model="m", default_profile="fast", directive={"x": [1]}).profile == "fast"


def test_tool_repeat_and_when_headers_are_typed() -> None:
    got = header_overrides([("X-Mock-Tool-Repeat", "TRUE"), ("X-Mock-When", "turn=0")])
    assert got == {"tool_repeat": True, "when": Condition(turn=frozenset({0}))}
    assert header_overrides([("X-Mock-Tool-Repeat", "0")]) == {"tool_repeat": False}
    with pytest.raises(InvalidRequest) as info:
        header_overrides([("X-Mock-Tool-Repeat", "sometimes")])
    assert "expected true or false" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        header_overrides([("X-Mock-When", "turn=first")])
    assert info.value.param == "X-Mock-When"
    assert metadata_overrides({"mock_when": {"has_tool_result": True}}) == {
        "when": Condition(has_tool_result=True)
    }


AFTER_TOOL = Conversation(turn=1, last_tool_results=(ToolResult("c1", "get_weather"),))


def test_when_keeps_or_drops_its_whole_source() -> None:
    headers = {"fault": "status=503", "tokens": 4, "when": parse_when("turn=1", "X-Mock-When")}
    rule = {"tokens": 2}
    first = resolve(
        model="m",
        default_profile="instant",
        rule=rule,
        headers=headers,
        conversation=Conversation(),
    )
    assert first.faults == Faults() and first.tokens == 2  # the rule still applies
    second = resolve(
        model="m", default_profile="instant", rule=rule, headers=headers, conversation=AFTER_TOOL
    )
    assert second.faults == Faults(status=503) and second.tokens == 4
    # A directive's `when` is its own: the headers still apply when it does not hold.
    directive = {"tokens": 9, "when": parse_when("last_is_tool_result=false", "directive when")}
    third = resolve(
        model="m",
        default_profile="instant",
        headers={"tokens": 4},
        directive=directive,
        conversation=AFTER_TOOL,
    )
    assert third.tokens == 4


def test_a_cached_control_is_not_reused_across_when_outcomes() -> None:
    headers = {"tokens": 4, "when": parse_when("turn=1", "X-Mock-When")}
    for _ in range(2):
        assert resolve(model="m", default_profile="instant", headers=headers).tokens is None
        assert (
            resolve(
                model="m", default_profile="instant", headers=headers, conversation=AFTER_TOOL
            ).tokens
            == 4
        )


def test_a_directive_carries_its_own_when() -> None:
    messages = (
        {"role": "user", "content": 'Hi [[mock tokens=3 when="turn=1;has_tool_result=true"]]'},
    )
    cleaned, found = extract_directives(messages)
    assert cleaned[0]["content"] == "Hi"
    assert found == {
        "tokens": 3,
        "when": Condition(turn=frozenset({1}), has_tool_result=True),
    }
    assert resolve(model="m", default_profile="instant", directive=found).tokens is None
    later = Conversation(turn=1, has_tool_result=True)
    assert (
        resolve(model="m", default_profile="instant", directive=found, conversation=later).tokens
        == 3
    )

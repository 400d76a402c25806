"""mockllm.rules: parsing and matching (model, prompt regex, nth, times)."""

from __future__ import annotations

import time

import pytest

from mockllm.conversation import summarize
from mockllm.errors import RuleError
from mockllm.rules import MAX_PATTERN_CHARS, RuleBook, parse_rules


def book(*raw: dict[str, object]) -> RuleBook:
    rules = RuleBook()
    rules.add(parse_rules(list(raw)))
    return rules


def test_match_on_model_glob_and_prompt_regex() -> None:
    rules = book(
        {"id": "w", "match": {"model": "gpt-*", "prompt": r"weather\b"}, "respond": {"text": "Sun"}}
    )
    assert rules.select("gpt-4o-mini", "the weather today", commit=True) is not None
    assert rules.select("mock-fast", "the weather today", commit=True) is None
    assert rules.select("gpt-4o-mini", "weatherman", commit=True) is None


def test_nth_counts_requests_of_that_kind() -> None:
    rules = book({"match": {"nth": [1, 3]}, "respond": {"fault": "status=429"}})
    picks = [rules.select("m", "p", commit=True) is not None for _ in range(4)]
    assert picks == [True, False, True, False]


def test_first_matching_rule_wins_and_later_rules_still_count() -> None:
    rules = book(
        {"id": "a", "match": {"nth": 1}, "respond": {"text": "A"}},
        {"id": "b", "match": {"nth": 2}, "respond": {"text": "B"}},
        {"id": "c", "respond": {"text": "C"}},
    )
    chosen = [rules.select("m", "p", commit=True) for _ in range(3)]
    assert [r.id if r else None for r in chosen] == ["a", "b", "c"]


def test_times_limits_applications() -> None:
    rules = book({"times": 2, "respond": {"text": "x"}})
    assert [rules.select("m", "", commit=True) is not None for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_select_without_commit_does_not_advance_counters() -> None:
    rules = book({"match": {"nth": 1}, "respond": {"text": "x"}})
    assert rules.select("m", "", commit=False) is not None
    assert rules.select("m", "", commit=False) is not None
    assert rules.select("m", "", commit=True) is not None
    assert rules.select("m", "", commit=True) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"respond": {"bogus": 1}},
        {"respond": {"fault": "explode"}},
        {"respond": {"itl_ms": "fast"}},
        {"match": {"prompt": "("}, "respond": {}},
        {"match": {"nth": 0}, "respond": {}},
        {"match": {"colour": "red"}, "respond": {}},
        {"respnd": {}},
        "not a rule",
    ],
)
def test_bad_rules_are_rejected_with_a_reason(raw: object) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([raw])
    assert info.value.message


def test_a_backtracking_pattern_matches_in_linear_time() -> None:
    # Python's re needs about 2**28 steps for this; RE2 has no backtracking at all.
    rules = book({"id": "evil", "match": {"prompt": "(a+)+$"}, "respond": {"text": "x"}})
    start = time.perf_counter()
    assert rules.select("m", "a" * 28 + "b", commit=True) is None
    assert rules.select("m", "a" * 100_000, commit=True) is not None
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "RE2"),  # a backreference
        (r"weather(?=today)", "RE2"),  # look-ahead
        ("x" * (MAX_PATTERN_CHARS + 1), "characters long"),
        ("[ab]{1000}[cd]{1000}[ef]{1000}[gh]{1000}[ij]{1000}[kl]{1000}", "instructions"),
    ],
)
def test_patterns_re2_or_the_limits_refuse_say_why(pattern: str, reason: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([{"match": {"prompt": pattern}, "respond": {}}])
    assert reason in info.value.message and info.value.param == "prompt"
    assert len(info.value.message) < 400


def test_match_cost_counts_prompt_patterns_only() -> None:
    rules = book(
        {"id": "p", "match": {"prompt": "weather"}, "respond": {}},
        {"id": "m", "match": {"model": "gpt-*"}, "respond": {}},
    )
    assert rules.match_cost("") == 0
    assert rules.match_cost("x" * 1000) == 1000 * rules.rules[0].prompt.programsize  # type: ignore[union-attr]
    assert book({"respond": {}}).match_cost("x" * 1000) == 0


def test_a_rule_removed_while_matching_ran_is_not_chosen() -> None:
    rules = book({"id": "a", "respond": {"text": "A"}}, {"id": "b", "respond": {"text": "B"}})
    matched = rules.matching("m", "p")
    rules.remove("a")
    chosen = rules.choose(matched, commit=True)
    assert chosen is not None and chosen.id == "b"
    assert rules.seen == {"b": 1}


def test_unknown_fields_are_quoted_only_when_they_look_like_names() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([{"respnd": {}, "root:$6$secret:19000:0:99999:7::": None}])
    assert "'respnd'" in info.value.message and "secret" not in info.value.message


def miss(rules: RuleBook, model: str, prompt: str) -> str | None:
    """What the chat handler records: the near miss of a request no rule answered."""
    matched = rules.matching(model, prompt)
    assert rules.choose(matched, commit=True) is None
    return rules.near_miss(model, prompt, matched, committed=True)


def test_near_miss_names_the_closest_rule_and_why() -> None:
    rules = book(
        {"id": "far", "match": {"model": "mock-*", "prompt": "weather"}, "respond": {}},
        {"id": "r1", "match": {"model": "gpt-4o-mini", "prompt": "Hi"}, "respond": {}},
    )
    assert miss(rules, "gpt-4o", "Hi there") == "rule 'r1': model 'gpt-4o' != 'gpt-4o-mini'"
    assert miss(rules, "mock-fast", "Hi") == ("rule 'far': prompt 'Hi' does not match /weather/")
    assert miss(rules, "other", "nothing") == (
        "rule 'far': model 'other' does not match 'mock-*'; "
        "prompt 'nothing' does not match /weather/"
    )


def test_near_miss_of_a_rule_whose_nth_or_times_is_spent() -> None:
    rules = book({"id": "once", "times": 1, "respond": {}})
    assert rules.select("m", "p", commit=True) is not None
    assert miss(rules, "m", "p") == "rule 'once': times 1 already used"
    rules = book({"id": "second", "match": {"nth": 2}, "respond": {}})
    assert miss(rules, "m", "p") == "rule 'second': nth [2], but this is request 1 of its kind"
    # The preview counts the request it describes without committing it.
    matched = rules.matching("m", "p")
    assert rules.choose(matched, commit=False) is not None


def test_no_near_miss_without_rules() -> None:
    assert RuleBook().near_miss("m", "p", [], committed=True) is None


FIRST = summarize([{"role": "user", "content": "Weather?"}], ["get_weather"])
AFTER_TOOL = summarize(
    [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_1", "function": {"name": "get_weather"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny."},
    ],
    ["get_weather"],
)


def test_rules_match_on_conversation_state() -> None:
    rules = book(
        {"id": "ask", "match": {"turn": 0, "tools_offered": "get_weather"}, "respond": {}},
        {"id": "answer", "match": {"tool_result_for": "get_weather"}, "respond": {}},
    )
    first = rules.select("m", "Weather?", commit=True, conversation=FIRST)
    second = rules.select("m", "Weather?", commit=True, conversation=AFTER_TOOL)
    assert (first and first.id, second and second.id) == ("ask", "answer")
    # Without a conversation a request is a first turn offering no tools.
    assert rules.select("m", "Weather?", commit=True) is None


def test_nth_counts_requests_whose_conversation_matches_too() -> None:
    rules = book({"match": {"has_tool_result": True, "nth": 2}, "respond": {}})
    picks = [
        rules.select("m", "p", commit=True, conversation=c) is not None
        for c in (FIRST, AFTER_TOOL, FIRST, AFTER_TOOL)
    ]
    assert picks == [False, False, False, True]


def test_conversation_fields_round_trip_through_to_json() -> None:
    raw = {
        "id": "r",
        "match": {"model": "gpt-*", "turn": [1], "last_is_tool_result": True},
        "respond": {"text": "done"},
    }
    (rule,) = parse_rules([raw])
    assert rule.to_json() == raw
    assert parse_rules([rule.to_json()]) == [rule]


@pytest.mark.parametrize(
    ("match", "said"),
    [
        ({"turn": -1}, "Rule 'r': match.turn must be an integer >= 0"),
        ({"last_is_tool_result": "yes"}, "Rule 'r': match.last_is_tool_result must be true"),
        ({"tool_result_for": 7}, "Rule 'r': match.tool_result_for must be a call id"),
        ({"turns": 1}, "unknown match field(s) ['turns']; known: ['has_tool_result', "),
    ],
)
def test_bad_conversation_fields_say_which_rule_and_field(
    match: dict[str, object], said: str
) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([{"id": "r", "match": match, "respond": {}}])
    assert said in info.value.message and info.value.param == "match"


def test_when_belongs_in_a_rules_match_not_its_respond() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules([{"id": "r", "respond": {"when": "turn=0", "text": "x"}}])
    assert "go in its match (turn, last_is_tool_result" in info.value.message


def test_near_miss_explains_conversation_conditions() -> None:
    rules = book(
        {"id": "answer", "match": {"model": "gpt-*", "tool_result_for": "search"}, "respond": {}}
    )
    matched = rules.matching("gpt-4o", "Weather?", AFTER_TOOL)
    assert rules.near_miss(
        "gpt-4o", "Weather?", matched, committed=True, conversation=AFTER_TOOL
    ) == ("rule 'answer': the last tool result is for 'get_weather' (call 'call_1'), not 'search'")
    assert rules.near_miss("gpt-4o", "Weather?", [], committed=True, conversation=FIRST) == (
        "rule 'answer': no tool result for 'search' at the end of the conversation"
    )

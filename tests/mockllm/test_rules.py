"""mockllm.rules: parsing and matching (model, prompt regex, nth, times)."""

from __future__ import annotations

import pytest

from mockllm.errors import RuleError
from mockllm.rules import RuleBook, parse_rules


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

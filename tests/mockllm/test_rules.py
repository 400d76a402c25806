"""mockllm.rules: parsing, file loading and matching (model, prompt regex, nth, times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockllm.errors import RuleError
from mockllm.rules import RuleBook, load_rules_file, parse_rules


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


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(
        "rules:\n  - id: slow\n    match: {model: mock-fast}\n    respond: {itl_ms: 50}\n"
    )
    json_file = tmp_path / "rules.json"
    json_file.write_text('[{"id": "t", "respond": {"text": "hi"}}]')
    assert [r.id for r in load_rules_file(yaml_file)] == ["slow"]
    assert load_rules_file(json_file)[0].respond == {"text": "hi"}


def test_bad_rule_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(RuleError, match=r"broken\.yaml"):
        load_rules_file(broken)
    with pytest.raises(RuleError, match=r"missing\.yaml"):
        load_rules_file(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- respond: {tokens: -3}\n")
    with pytest.raises(RuleError, match=r"wrong\.yaml"):
        load_rules_file(wrong)

"""mockllm.rulesfile: rules from a file, and errors that locate the problem without quoting
the file (``--rules`` takes any path, ``/etc/shadow`` included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockllm.errors import RuleError
from mockllm.rulesfile import MAX_FILE_BYTES, load_rules_file

# A line no error may repeat: it stands for a password hash in a file named by mistake.
SECRET = "root:$6$Zx9secretsalt$Q1w2e3r4t5y6u7i8o9p0secrethashvalue:19000:0:99999:7:::"


def load_error(path: Path) -> str:
    with pytest.raises(RuleError) as info:
        load_rules_file(path)
    return info.value.message


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(
        "rules:\n  - id: slow\n    match: {model: mock-fast}\n    respond: {itl_ms: 50}\n"
    )
    json_file = tmp_path / "rules.json"
    json_file.write_text('[{"id": "t", "respond": {"text": "hi"}}]')
    assert [r.id for r in load_rules_file(yaml_file)] == ["slow"]
    assert load_rules_file(json_file)[0].respond == {"text": "hi"}


def test_an_empty_or_comment_only_file_has_no_rules(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    comments = tmp_path / "comments.yaml"
    comments.write_text("# nothing yet\n")
    assert load_rules_file(empty) == [] and load_rules_file(comments) == []


def test_bad_rule_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    assert "broken.yaml" in load_error(broken)
    assert "missing.yaml" in load_error(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- respond: {tokens: -3}\n")
    assert "wrong.yaml" in load_error(wrong)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("shadow", SECRET + "\n" + SECRET.replace("root", "daemon") + "\n"),  # a mapping key
        ("shadow.yaml", SECRET.replace(":", " ") + "\n"),  # a plain scalar
        ("flow.yaml", f"- a: [1\n  b: {SECRET}\n"),  # a YAML syntax error on that line
        ("tab.yaml", f"rules:\n\t- {SECRET}\n"),  # a tab: the scanner's own error
        ("shadow.json", SECRET + "\n"),  # not JSON at all
        ("list.yaml", f"- {SECRET}\n"),  # a list, but of a string
    ],
)
def test_a_file_that_is_not_rules_is_not_quoted(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    message = load_error(path)
    assert name in message
    for piece in ("secret", "Q1w2e3", "19000", "daemon"):
        assert piece not in message, message


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("- id: a\n  respond: {text: ok}\n- a: [1\n  b: 2\n")
    message = load_error(path)
    assert "line 4, column 4" in message and "not valid YAML" in message
    as_json = tmp_path / "rules.json"
    as_json.write_text('[\n  {"id": "a",\n   "respond": {"text": "ok"}\n  }, oops\n]')
    assert "line 4" in load_error(as_json)


def test_a_bad_rule_names_the_line_it_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - id: fine\n    respond: {text: ok}\n  - id: bad\n    respond: {tokens: many}\n"
    )
    message = load_error(path)
    assert "line 4 (rule 2)" in message and "'bad'" in message and "tokens" in message


def test_a_value_at_fault_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"- respond: {{profile: '{'x' * 5000}'}}\n")
    message = load_error(path)
    assert "profile" in message and "x" * 50 in message
    assert "x" * 81 not in message


def test_binary_and_endless_files_are_refused_early(tmp_path: Path) -> None:
    binary = tmp_path / "rules.yaml"
    binary.write_bytes(b"rules:\n  - id: a\n\xff\xfe\x00\x01" + SECRET.encode())
    message = load_error(binary)
    assert "line 3" in message and "not UTF-8" in message and "secret" not in message
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)
    assert "larger than" in load_error(huge)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nrules: [{respond: {tool_arguments: *a8}}]\n")
    assert "more than" in load_error(path)


def test_a_lone_surrogate_in_a_rules_file_is_refused(tmp_path: Path) -> None:
    as_yaml = tmp_path / "rules.yaml"
    as_yaml.write_text('- respond: {text: "\\ud800"}\n')
    assert "surrogate" in load_error(as_yaml)
    as_json = tmp_path / "rules.json"
    as_json.write_text('[{"respond": {"text": "\\ud800"}}]')
    assert "surrogate" in load_error(as_json)


def test_a_bad_conversation_condition_names_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - id: ask\n    match: {turn: 0}\n    respond: {tool: get_weather}\n"
        "  - id: answer\n    match: {last_is_tool_result: yes please}\n    respond: {text: ok}\n"
    )
    message = load_error(path)
    assert "line 5 (rule 2)" in message
    assert "'answer': match.last_is_tool_result must be true or false" in message


def test_conversation_conditions_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- match: {turn: [0, 1], tool_result_for: get_weather, tools_offered: [a, b]}\n"
        "  respond: {text: done}\n"
    )
    (rule,) = load_rules_file(path)
    assert rule.to_json()["match"] == {
        "turn": [0, 1],
        "tool_result_for": "get_weather",
        "tools_offered": ["a", "b"],
    }

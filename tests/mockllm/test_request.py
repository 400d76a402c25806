"""mockllm.request: body validation with OpenAI's error messages and codes."""

from __future__ import annotations

from typing import Any

import pytest

from mockllm.errors import InvalidRequest
from mockllm.request import parse_body, parse_chat_request

OK: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_minimal_request() -> None:
    request = parse_chat_request(OK)
    assert request.model == "m" and not request.stream and request.n == 1
    assert request.last_user_text == "hi"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    request = parse_chat_request({**OK, "max_tokens": 9, "max_completion_tokens": 4})
    assert request.max_tokens == 4


def test_tool_choice_forms() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert parse_chat_request({**OK, "tools": tools, "tool_choice": "required"}).forced_tool == "f"
    forced = {"type": "function", "function": {"name": "f"}}
    assert parse_chat_request({**OK, "tools": tools, "tool_choice": forced}).forced_tool == "f"
    assert parse_chat_request({**OK, "tools": tools, "tool_choice": "auto"}).forced_tool is None


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"model": 3}, "model", "invalid_type"),
        ({"messages": None}, "messages", "missing_required_parameter"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": []}, "messages", "empty_array"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
        ({"messages": [{"role": "robot"}]}, "messages[0].role", "invalid_value"),
        ({"max_tokens": -5}, "max_tokens", "integer_below_min_value"),
        ({"max_tokens": "5"}, "max_tokens", "invalid_type"),
        ({"max_tokens": True}, "max_tokens", "invalid_type"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 1000}, "n", "integer_above_max_value"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"seed": 1.5}, "seed", "invalid_type"),
        ({"tools": {}}, "tools", "invalid_type"),
        ({"tool_choice": "always"}, "tool_choice", "invalid_value"),
    ],
)
def test_bad_fields(change: dict[str, Any], param: str, code: str) -> None:
    body = {k: v for k, v in {**OK, **change}.items() if v is not None}
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body)
    assert (info.value.param, info.value.code) == (param, code)
    assert info.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\xff\xfe", b""])
def test_bad_json_bodies(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_body(raw)

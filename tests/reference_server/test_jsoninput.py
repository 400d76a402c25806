"""Client JSON in: what ``json.loads`` lets through and the server could not carry is refused."""

from __future__ import annotations

import json

import pytest

from reference_server.errors import ProtocolError
from reference_server.jsoninput import MAX_DEPTH, load_object


def refusal(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        load_object(text)
    return info.value


def nested(depth: int) -> str:
    """An object whose deepest value sits ``depth`` containers down (the object included)."""
    return '{"a":' + "[" * (depth - 1) + "0" + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"content": "\\ud800"}', "lone UTF-16 surrogate"),
        ('{"content": "ok \\udfff then"}', "lone UTF-16 surrogate"),
        ('{"content": "\\ude00\\ud83d"}', "lone UTF-16 surrogate"),  # a pair in the wrong order
        ('{"metadata": {"\\ud800": "v"}}', "lone UTF-16 surrogate"),
        (b'{"content": "\xed\xa0\x80"}', "lone UTF-16 surrogate"),  # the bytes of one, unescaped
        ('{"temperature": NaN}', "NaN or an infinite number"),
        ('{"temperature": -Infinity}', "NaN or an infinite number"),
        ('{"temperature": 1e400}', "NaN or an infinite number"),
        ('{"max_tokens": ' + "1" * 5000 + "}", "too many digits"),
        (nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH} levels"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", f"deeper than {MAX_DEPTH} levels"),
    ],
)
def test_input_the_server_cannot_carry_is_invalid_message(text: str | bytes, words: str) -> None:
    error = refusal(text)
    assert error.code == "invalid_message" and words in error.message
    assert error.retryable is False


def test_a_refusal_names_the_message_id_when_there_is_a_usable_one() -> None:
    assert refusal('{"id": "q7", "content": "\\ud800"}').msg_id == "q7"
    assert refusal('{"id": "\\ud800", "content": "x"}').msg_id is None
    assert refusal('{"id": 7, "content": "\\ud800"}').msg_id is None


def test_valid_unicode_and_finite_numbers_pass_unchanged() -> None:
    text = '{"content": "\\ud83d\\ude00 é \\u00e9 \\\\ud800", "t": 0.5, "n": -1e300}'
    assert load_object(text) == json.loads(text)
    assert load_object(text)["content"] == "\U0001f600 é é \\ud800"
    assert load_object(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))


@pytest.mark.parametrize(
    ("text", "code"),
    [("{nope", "invalid_json"), (b"\xff\xfe", "invalid_json"), ("[1]", "invalid_message")],
)
def test_syntax_and_shape(text: str | bytes, code: str) -> None:
    assert refusal(text).code == code


def test_the_message_says_what_was_read() -> None:
    with pytest.raises(ProtocolError, match=r"^body is not valid JSON"):
        load_object("{nope", "body")
    with pytest.raises(ProtocolError, match=r"^body holds a lone"):
        load_object('{"a": "\\ud800"}', "body")

"""mockllm.strictjson: the one parser of incoming JSON (bytes in, a value or an error out)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mockllm.errors import InvalidJSON
from mockllm.strictjson import MAX_DEPTH, check_value, parse_json


def refused(raw: bytes | str) -> InvalidJSON:
    with pytest.raises(InvalidJSON) as info:
        parse_json(raw)
    return info.value


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
        (b'{"a": "ok \\uDFFF"}', "a"),  # a lone low surrogate, upper-case escape
        (b'{"a": ["x", "\\ud83d"]}', "a[1]"),  # a high surrogate without its low half
        (b'{"\\ud800": 1}', "<key>"),
    ],
)
def test_a_lone_surrogate_escape_is_refused_and_located(raw: bytes, where: str) -> None:
    error = refused(raw)
    assert not error.syntax
    assert error.param == where and "surrogate" in error.message


def test_a_surrogate_pair_is_a_character_and_accepted() -> None:
    assert parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_raw_surrogate_bytes_are_not_utf8() -> None:
    # json.loads(bytes) would decode these with "surrogatepass" and return "\ud800".
    error = refused(b'{"a": "\xed\xa0\x80"}')
    assert error.syntax and "UTF-8" in error.message


@pytest.mark.parametrize("raw", [b'{"t": NaN}', b'{"t": Infinity}', b'{"t": -1e400}'])
def test_values_that_are_not_json_numbers_are_refused(raw: bytes) -> None:
    assert refused(raw).syntax


def test_nesting_is_bounded() -> None:
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(deep) is not None
    assert "nested deeper" in refused("[" + deep + "]").message
    assert "nested deeper" in refused("[" * 100_000 + "]" * 100_000).message


def test_malformed_json_is_a_syntax_error() -> None:
    assert refused(b"{not json").syntax


def test_ordinary_documents_pass_unchanged() -> None:
    doc: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "héllo 😀"}]}
    assert parse_json(json.dumps(doc).encode()) == doc
    assert parse_json(json.dumps(doc, ensure_ascii=False).encode()) == doc


def test_check_value_counts_shared_values_each_time() -> None:
    shared = ["x"] * 10
    doc = [shared] * 10  # 111 values once expanded
    check_value(doc, max_values=111)
    with pytest.raises(InvalidJSON, match="more than 110 values"):
        check_value(doc, max_values=110)


def test_a_text_with_a_byte_order_mark_is_refused_as_json_loads_refuses_it() -> None:
    with pytest.raises(InvalidJSON, match="BOM"):
        parse_json("\ufeff{}")
    assert parse_json("\ufeff{}".encode()) == {}  # bytes: utf-8-sig drops it

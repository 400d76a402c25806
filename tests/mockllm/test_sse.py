"""mockllm.sse: the one SSE encoder and decoder (the client-side cases: tests/scenarios)."""

from __future__ import annotations

import random

import pytest

from mockllm.sse import (
    DONE,
    SSEComment,
    SSEEvent,
    SSEParser,
    comment,
    encode,
    retry,
    split_event,
)


def test_single_line_event() -> None:
    assert encode('{"a":1}') == b'data: {"a":1}\n\n'


def test_multi_line_data_becomes_several_data_lines() -> None:
    assert encode("a\nb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"


def test_event_and_id_fields() -> None:
    assert encode(b"x", event="error", id="7") == b"event: error\nid: 7\ndata: x\n\n"


def test_comment_and_retry() -> None:
    assert comment("ping") == b": ping\n\n"
    assert comment() == b":\n\n"
    assert retry(1000) == b"retry: 1000\n\n"


@pytest.mark.parametrize("call", [lambda: encode("x", event="a\nb"), lambda: comment("a\rb")])
def test_a_field_with_a_line_break_is_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match="line break"):
        call()


def test_done_terminator() -> None:
    assert DONE == b"data: [DONE]\n\n"


def test_split_event_cuts_mid_payload_and_loses_nothing() -> None:
    event = encode('{"content":"hello"}')
    head, tail = split_event(event)
    assert head + tail == event
    assert head and tail and not head.endswith(b"\n\n")


def feed_in_pieces(body: bytes, cuts: list[int]) -> tuple[SSEParser, list[SSEEvent | SSEComment]]:
    parser = SSEParser()
    out: list[SSEEvent | SSEComment] = []
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        out += parser.feed(body[start:end])
    return parser, out


@pytest.mark.parametrize("seed", range(40))
def test_every_terminator_and_any_read_boundary(seed: int) -> None:
    body = 'data: {"a":1}\r\ndata: é😀\n\r\n: c\rdata: x\r\r\ndata: [DONE]\n\ndata: last'.encode()
    rng = random.Random(seed)
    # Reads cut anywhere: inside a CRLF, inside a multi-byte character, one byte at a time.
    cuts = sorted(rng.sample(range(1, len(body)), rng.randint(0, len(body) - 1)))
    parser, out = feed_in_pieces(body, cuts)
    assert out == [
        SSEEvent('{"a":1}\né😀'),
        SSEComment("c"),
        SSEEvent("x"),
        SSEEvent("[DONE]"),
    ]
    assert parser.feed_eof(dispatch_unfinished=True) == [SSEEvent("last")]
    assert parser.truncated
    assert parser.feed_eof() == []


def test_invalid_utf8_is_replaced() -> None:
    assert SSEParser().feed(b"data: \xff\n\n") == [SSEEvent("\ufffd")]


def test_data_lines_join_and_fields_without_a_space() -> None:
    body = b': keep-alive\n\nevent: x\nid: 3\ndata:{"a":\ndata: 1}\n\ndata: [DONE]'
    parser = SSEParser()
    assert parser.feed(body) == [SSEComment("keep-alive"), SSEEvent('{"a":\n1}', "x", "3")]
    assert parser.feed_eof(dispatch_unfinished=True) == [SSEEvent("[DONE]", id="3")]


def test_the_spec_discards_an_unfinished_event_unless_asked() -> None:
    parser = SSEParser()
    parser.feed(b"data: half\n")
    assert parser.feed_eof() == [] and parser.truncated


def test_a_bom_is_dropped_only_at_the_start() -> None:
    bom = "\ufeff".encode()
    _, out = feed_in_pieces(bom + b"data: a\n\n" + bom + b"data: b\n\n", [1, 2])
    assert out == [SSEEvent("a")]  # the second BOM makes "\ufeffdata" an unknown field

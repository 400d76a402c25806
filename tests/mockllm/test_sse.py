"""mockllm.sse: event encoding."""

from __future__ import annotations

from mockllm.sse import DONE, encode, split_event


def test_single_line_event() -> None:
    assert encode('{"a":1}') == b'data: {"a":1}\n\n'


def test_multi_line_data_becomes_several_data_lines() -> None:
    assert encode("a\nb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"


def test_event_and_id_fields() -> None:
    assert encode(b"x", event="error", id="7") == b"event: error\nid: 7\ndata: x\n\n"


def test_done_terminator() -> None:
    assert DONE == b"data: [DONE]\n\n"


def test_split_event_cuts_mid_payload_and_loses_nothing() -> None:
    event = encode('{"content":"hello"}')
    head, tail = split_event(event)
    assert head + tail == event
    assert head and tail and not head.endswith(b"\n\n")

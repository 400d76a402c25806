"""Incremental SSE parser (WHATWG rules) and the SSE stream recorder (pure)."""

from __future__ import annotations

import json

import pytest

from scenarios.clients import ClientProtocolError, SSEComment, SSEEvent, SSEParser, SSERecorder
from scenarios.clients.records import StreamRecord


def _all_at_once(data: bytes) -> list[SSEEvent | SSEComment]:
    p = SSEParser()
    return p.feed(data) + p.feed_eof()


def _byte_by_byte(data: bytes) -> list[SSEEvent | SSEComment]:
    p = SSEParser()
    out: list[SSEEvent | SSEComment] = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    return out + p.feed_eof()


STREAM = (
    "\ufeff: hello\r\n"
    "retry: 1500\r\n"
    "id: 0\r\n"
    "event: token\r\n"
    'data: {"content": "h\u00e9"}\r\n'
    "\r\n"
    "data: line1\n"
    "data:line2\n"
    "data\n"
    "\n"
    "id: 7\rdata: cr\r\r"
    ": keep-alive\n\n"
    "id\n\n"  # empty id resets the last event id; no data: nothing dispatched
    "data: after-reset\n\n"
    "data: truncated"
).encode()

EXPECTED: list[SSEEvent | SSEComment] = [
    SSEComment("hello"),
    SSEEvent('{"content": "h\u00e9"}', "token", "0"),
    SSEEvent("line1\nline2\n", "message", "0"),
    SSEEvent("cr", "message", "7"),
    SSEComment("keep-alive"),
    SSEEvent("after-reset", "message", None),
]


@pytest.mark.parametrize("split", [_all_at_once, _byte_by_byte])
def test_parse_any_split(split: object) -> None:
    assert callable(split)
    assert split(STREAM) == EXPECTED


def test_every_two_way_split() -> None:
    for cut in range(len(STREAM) + 1):
        p = SSEParser()
        out = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:]) + p.feed_eof()
        assert out == EXPECTED, cut


def test_state_retry_id_and_truncation() -> None:
    p = SSEParser()
    p.feed(b"retry: 12x\nretry: 250\nid: a\0b\nid: 5\ndata: x\n\n")
    assert (p.retry_ms, p.last_event_id, p.truncated) == (250, "5", False)
    p.feed(b"data: half")
    assert p.feed_eof() == []
    assert p.truncated


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\n") == []  # the LF completes the CR: not a blank line
    assert p.feed(b"\r\n") == [SSEEvent("a")]


def _record_events(frames: list[str]) -> StreamRecord:
    r = StreamRecord(transport="sse", id="s", sent_at=0.0)
    rec = SSERecorder(r)
    p = SSEParser()
    for t, item in enumerate(p.feed("".join(frames).encode())):
        rec.handle(item, float(t))
    return r


def test_recorder_tokens_by_event_name_and_id() -> None:
    r = _record_events(
        [
            'event: start\ndata: {"stream_id": "S", "resume_token": "k"}\n\n',
            ": hb\n\n",
            'id: 0\nevent: token\ndata: {"content": "a"}\n\n',
            'id: 1\ndata: {"type": "token", "index": 1, "content": "b"}\n\n',
            'event: end\ndata: {"finish_reason": "stop", "usage": {"t": 2}, "tokens": 2}\n\n',
        ]
    )
    assert (r.stream_id, r.resume_token, r.text, r.outcome) == ("S", "k", "ab", "completed")
    assert (r.finish_reason, r.usage, r.last_event_id, r.missing_indexes) == (
        "stop",
        {"t": 2},
        "1",
        [],
    )


def test_recorder_error_and_done() -> None:
    r = _record_events(
        ['event: error\ndata: {"code": "upstream_error", "message": "x", "retryable": true}\n\n']
    )
    assert (r.outcome, r.error_code, r.error_retryable) == ("error", "upstream_error", True)
    assert _record_events(["data: [DONE]\n\n"]).outcome == "completed"


def test_recorder_rejects_non_json() -> None:
    with pytest.raises(ClientProtocolError, match="not JSON"):
        _record_events(["event: token\ndata: nope\n\n"])
    with pytest.raises(ClientProtocolError, match="without index"):
        _record_events(["event: token\ndata: " + json.dumps({"content": "x"}) + "\n\n"])

"""WebSocket protocol v1 decoding, encoding and the per-id recorder (pure)."""

from __future__ import annotations

import json

import pytest

from scenarios.clients import (
    ClientProtocolError,
    StreamRecord,
    V1Cancelled,
    V1End,
    V1Error,
    V1Hello,
    V1Ping,
    V1Recorder,
    V1Start,
    V1Token,
    V1ToolCall,
    V1Unknown,
    decode_v1,
    encode_cancel,
    encode_chat,
    encode_resume,
)


def _d(**obj: object) -> str:
    return json.dumps(obj)


def test_decode_every_server_message() -> None:
    assert decode_v1(
        _d(
            type="hello",
            protocol="llm-stream.v1",
            session_id="s",
            resume_token="r",
            heartbeat_interval_ms=15000,
            limits={"max_streams": 8},
            extra="ignored",
        )
    ) == V1Hello("llm-stream.v1", "s", "r", 15000, {"max_streams": 8})
    assert decode_v1(_d(type="start", id="a", stream_id="S", resume_token="t", replay=True)) == (
        V1Start("a", "S", "t", True)
    )
    assert decode_v1(_d(type="token", id="a", index=3, content="hi")) == V1Token("a", 3, "hi")
    assert decode_v1(
        _d(type="tool_call", id="a", index=4, call_index=0, call_id="c", name="f", arguments="{")
    ) == V1ToolCall("a", 4, 0, "{", "c", "f")
    assert decode_v1(
        _d(type="end", id="a", finish_reason="stop", usage={"total_tokens": 5}, tokens=5)
    ) == V1End("a", "stop", {"total_tokens": 5}, 5)
    assert decode_v1(_d(type="cancelled", id="a", index=-1)) == V1Cancelled("a", -1)
    assert decode_v1(
        _d(type="error", code="upstream_error", message="boom", retryable=True, id="a")
    ) == V1Error("upstream_error", "boom", True, "a")
    assert decode_v1(_d(type="error", code="invalid_json", message="x")) == V1Error(
        "invalid_json", "x", False, None
    )
    assert decode_v1(_d(type="ping", ts=12)) == V1Ping(12)
    assert decode_v1(b'{"type": "future", "x": 1}') == V1Unknown(
        "future", {"type": "future", "x": 1}
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"id": "a"}', "no string 'type'"),
        ('{"type": "token", "id": "a", "content": "x"}', "'index' must be an integer"),
        ('{"type": "token", "id": "a", "index": true, "content": "x"}', "'index'"),
        ('{"type": "token", "index": 0, "content": "x"}', "'id' must be a string"),
        ('{"type": "start", "id": "a"}', "'stream_id'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_frames_raise_clear_errors(frame: str | bytes, message: str) -> None:
    with pytest.raises(ClientProtocolError, match=message):
        decode_v1(frame)


def test_encoders() -> None:
    assert json.loads(
        encode_chat("a", [{"role": "user", "content": "hi"}], model="m", max_tokens=5, after=-1)
    ) == {
        "type": "chat",
        "id": "a",
        "messages": [{"role": "user", "content": "hi"}],
        "model": "m",
        "max_tokens": 5,
        "after": -1,
    }
    assert json.loads(encode_chat("b", [], temperature=0.5)) == {
        "type": "chat",
        "id": "b",
        "messages": [],
        "temperature": 0.5,
    }
    assert json.loads(encode_cancel("a")) == {"type": "cancel", "id": "a"}
    assert json.loads(encode_resume("S", 4, "tok")) == {
        "type": "resume",
        "stream_id": "S",
        "after": 4,
        "resume_token": "tok",
    }


def test_recorder_routes_by_id_and_flags_stray_events() -> None:
    rec = V1Recorder()
    a = rec.track(StreamRecord(transport="ws", id="a", sent_at=0.0))
    b = rec.track(StreamRecord(transport="ws", id="b", sent_at=0.0))
    events = [
        V1Hello("llm-stream.v1", "s", "r"),
        V1Start("a", "SA", "ta"),
        V1Start("b", "SB", "tb"),
        V1Token("a", 0, "x"),
        V1Token("b", 0, "y"),
        V1Ping(1),
        V1Token("a", 1, "z"),
        V1Token("c", 0, "stray"),
        V1End("a", "stop", {"total_tokens": 2}, 2),
        V1Cancelled("b", 0),
        V1Error("unknown_type", "?"),
    ]
    for i, ev in enumerate(events):
        rec.handle(ev, float(i + 1))
    assert rec.hello is not None and rec.hello.resume_token == "r"
    assert (a.stream_id, a.resume_token, a.text, a.outcome, a.finish_reason) == (
        "SA",
        "ta",
        "xz",
        "completed",
        "stop",
    )
    assert a.expected_tokens == 2 and a.missing_indexes == []
    assert (b.outcome, b.cancelled_index, b.text) == ("cancelled", 0, "y")
    assert rec.pings == 1
    assert rec.stray == [V1Token("c", 0, "stray")]
    assert [e.code for e in rec.connection_errors] == ["unknown_type"]


def test_stream_error_and_connection_loss() -> None:
    rec = V1Recorder()
    a = rec.track(StreamRecord(transport="ws", id="a"))
    b = rec.track(StreamRecord(transport="ws", id="b"))
    rec.handle(V1Error("upstream_error", "boom", True, "a"), 1.0)
    assert (a.outcome, a.error_code, a.error_retryable) == ("error", "upstream_error", True)
    assert rec.connection_lost(2.0, 1006) == [b]
    assert (b.outcome, b.close_code, a.close_code) == ("disconnected", 1006, None)


def test_replayed_start_is_counted() -> None:
    rec = V1Recorder()
    a = rec.track(StreamRecord(transport="ws", id="a"))
    rec.handle(V1Start("a", "S", None, False), 1.0)
    rec.handle(V1Start("a", "S", None, True), 2.0)
    assert (a.starts, a.replays) == (2, 1)


def test_stream_moved_to_a_new_connection_is_not_lost_with_the_old_one() -> None:
    old, new = V1Recorder(), V1Recorder()
    rec = old.track(StreamRecord(transport="ws", id="a"))
    rec.reopen()
    new.track(rec)
    assert old.connection_lost(1.0, 1006) == []
    assert rec.outcome is None
    assert new.connection_lost(2.0, 1001) == [rec]
    assert (rec.outcome, rec.close_code) == ("disconnected", 1001)

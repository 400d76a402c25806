"""Tutorial-shaped protocol decoding and its last-sent-wins recorder (pure)."""

from __future__ import annotations

import json

import pytest

from scenarios.clients import (
    ClientProtocolError,
    StreamRecord,
    TutorialEnd,
    TutorialError,
    TutorialRecorder,
    TutorialToken,
    TutorialUnknown,
    decode_tutorial,
    encode_tutorial,
)


def test_decode() -> None:
    assert decode_tutorial('{"type": "token", "content": "hi"}') == TutorialToken("hi")
    assert decode_tutorial('{"type": "end"}') == TutorialEnd()
    assert decode_tutorial('{"type": "error", "message": "x"}') == TutorialError("x")
    assert decode_tutorial('{"type": "weird"}') == TutorialUnknown({"type": "weird"})
    with pytest.raises(ClientProtocolError, match="not valid JSON"):
        decode_tutorial("{")
    with pytest.raises(ClientProtocolError, match="'content'"):
        decode_tutorial('{"type": "token"}')


def test_encode() -> None:
    assert json.loads(encode_tutorial([{"role": "user", "content": "q"}], model="m")) == {
        "messages": [{"role": "user", "content": "q"}],
        "model": "m",
    }


def test_in_band_marker_ends_the_stream() -> None:
    rec = TutorialRecorder()
    r = rec.begin(StreamRecord(transport="tutorial", id="1", sent_at=0.0), 0.0)
    for i, ev in enumerate([TutorialToken("a"), TutorialToken("b"), TutorialToken("[END]")]):
        rec.handle(ev, float(i + 1))
    assert (r.text, r.outcome, r.finish_reason, r.ended_at) == (
        "ab",
        "completed",
        "end_marker",
        3.0,
    )
    assert [a.index for a in r.arrivals] == [0, 1]
    # anything after the end has nowhere to go
    rec.handle(TutorialToken("late"), 4.0)
    assert rec.stray == [TutorialToken("late")]


def test_marker_as_text_when_disabled_and_explicit_end() -> None:
    rec = TutorialRecorder(end_marker=None)
    r = rec.begin(StreamRecord(transport="tutorial", id="1"), 0.0)
    rec.handle(TutorialToken("[END]"), 1.0)
    rec.handle(TutorialEnd(), 2.0)
    assert (r.text, r.finish_reason) == ("[END]", "end")


def test_new_message_supersedes_and_steals_late_tokens() -> None:
    rec = TutorialRecorder()
    first = rec.begin(StreamRecord(transport="tutorial", id="1"), 0.0)
    rec.handle(TutorialToken("a"), 1.0)
    second = rec.begin(StreamRecord(transport="tutorial", id="2"), 2.0)
    rec.handle(TutorialToken("late-from-first"), 3.0)
    assert first.outcome == "cancelled"
    assert second.text == "late-from-first"


def test_error_and_disconnect() -> None:
    rec = TutorialRecorder()
    r = rec.begin(StreamRecord(transport="tutorial", id="1"), 0.0)
    rec.handle(TutorialError("upstream"), 1.0)
    assert (r.outcome, r.error_message) == ("error", "upstream")
    r2 = rec.begin(StreamRecord(transport="tutorial", id="2"), 2.0)
    assert rec.connection_lost(3.0, 1006) is r2
    assert (r2.outcome, r2.close_code) == ("disconnected", 1006)
    assert rec.connection_lost(4.0, 1006) is None

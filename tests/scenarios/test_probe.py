"""Protocol probes, their pure parts: what "expect" matches, how a step's message is filled."""

from __future__ import annotations

import pytest

from scenarios import model
from scenarios.drivers.probe import fill, frame_of, matches


def test_expectations_are_subsets_with_json_types() -> None:
    message = {"type": "error", "id": "x", "code": "unknown_stream", "retryable": False}
    assert matches(message, {"type": "error", "code": "unknown_stream"})
    assert not matches(message, {"type": "error", "code": "invalid_message"})
    assert not matches(message, {"retryable": 0})  # false is not 0
    assert matches({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}})
    assert matches(
        {"tokens": [{"index": 3, "content": "x"}, {"index": 4}]}, {"tokens": [{"index": 3}]}
    )
    assert not matches({"tokens": []}, {"tokens": [{"index": 3}]})
    assert not matches("raw text", {"type": "error"})


def test_steps_name_what_the_connection_saw() -> None:
    seen = {"stream_id": "s-1", "session_token": "tok"}
    step = model.ProbeStep(
        why="w",
        send={"type": "resume", "stream_id": "{stream_id}", "resume_token": "{session_token}"},
        expect={"type": "start"},
    )
    assert fill(step.send, seen) == {"type": "resume", "stream_id": "s-1", "resume_token": "tok"}
    big = model.ProbeStep(why="w", send_bytes=5000, expect_close=1009)
    assert len(frame_of(big, {}) or "") == 5000


def test_a_step_promises_something() -> None:
    with pytest.raises(ValueError, match="give expect or expect_close"):
        model.ProbeStep(why="w", send={"type": "ping"})
    with pytest.raises(ValueError, match="give one of send"):
        model.ProbeStep(why="w", send={"type": "ping"}, send_text="x", expect={"type": "pong"})

"""The v1 session rules without a socket: frames into a SocketSession, decisions out.

One test per rule of docs/protocol.md that the session decides; the store, the streams and the
clock are the test's own, so nothing here waits or opens a port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from reference_server.session import (
    Cancel,
    CloseNow,
    Decision,
    Follow,
    Generate,
    QueueTutorial,
    Send,
    SocketSession,
    outcome_frame,
    tool_call_frame,
)
from reference_server.settings import Settings
from reference_server.streams import InMemoryStreamStore, Session, StreamRecord

SETTINGS = Settings(
    max_streams_per_connection=2,
    messages_per_second=1000,
    message_burst=1000,
    heartbeat_interval_s=5,
    resume_grace_s=7,
)
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Sub:
    """A stream this socket follows, as the socket's subscription map holds it."""

    record: StreamRecord


class Harness:
    def __init__(self, settings: Settings = SETTINGS, *, tutorial: bool = False) -> None:
        self.store = InMemoryStreamStore()
        self.session = self.new_session("alice")
        self.rules = SocketSession(
            settings, self.store, None if tutorial else self.session, now=0.0
        )
        self.following: dict[str, Sub] = {}

    def new_session(self, client_id: str) -> Session:
        n = len(self.store.sessions())
        session = Session(f"session-{n}", client_id, f"session-token-{n}")
        self.store.add_session(session)
        return session

    def stream(self, chat_id: str, session: Session | None = None, tokens: int = 0) -> StreamRecord:
        owner = session or self.session
        record = StreamRecord(
            stream_id=f"stream-{owner.session_id}-{chat_id}",
            chat_id=chat_id,
            session_id=owner.session_id,
            resume_token=f"stream-token-{chat_id}",
            created_at=0.0,
            idle_limit_s=7.0,
        )
        for index in range(tokens):
            record.add_token(f"t{index}")
        self.store.add(record)
        return record

    def follow(self, record: StreamRecord) -> None:
        self.following[record.chat_id] = Sub(record)

    def receive(
        self, message: dict[str, Any] | str | None, now: float = 0.0, shutting_down: bool = False
    ) -> list[Decision]:
        text = json.dumps(message) if isinstance(message, dict) else message
        return self.rules.receive(text, now, following=self.following, shutting_down=shutting_down)


def frames(decisions: list[Decision]) -> list[dict[str, Any]]:
    assert all(isinstance(d, Send) for d in decisions), decisions
    return [json.loads(d.frame) for d in decisions if isinstance(d, Send)]


def error(decisions: list[Decision]) -> dict[str, Any]:
    [frame] = frames(decisions)
    assert frame["type"] == "error", frame
    return frame


def chat(chat_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "chat", "id": chat_id, "messages": MESSAGES, **fields}


# --- hello and liveness


def test_hello_announces_the_session_its_token_the_heartbeat_in_ms_and_the_limits() -> None:
    h = Harness()
    assert json.loads(h.rules.hello()) == {
        "type": "hello",
        "protocol": "llm-stream.v1",
        "session_id": "session-0",
        "resume_token": "session-token-0",
        "heartbeat_interval_ms": 5000,
        "limits": {
            "max_message_bytes": SETTINGS.max_message_bytes,
            "max_streams": 2,
            "messages_per_second": 1000.0,
            "resume_grace_ms": 7000,
        },
    }


def test_heartbeat_pings_with_a_counter_and_a_full_queue_may_drop_them() -> None:
    h = Harness()
    first, second = h.rules.heartbeat(5.0), h.rules.heartbeat(9.9)
    assert first == [Send('{"type":"ping","ts":1}', droppable=True)]
    assert second == [Send('{"type":"ping","ts":2}', droppable=True)]


def test_a_client_silent_past_the_heartbeat_deadline_is_closed_1011() -> None:
    h = Harness()  # deadline: twice the 5 s interval
    assert isinstance(h.rules.heartbeat(10.0)[0], Send)
    assert h.rules.heartbeat(10.1) == [
        CloseNow(1011, "heartbeat timeout: no message from the client")
    ]


def test_any_message_a_pong_included_proves_the_client_alive() -> None:
    h = Harness()
    assert h.receive({"type": "pong", "ts": 1}, now=8.0) == []
    assert isinstance(h.rules.heartbeat(18.0)[0], Send)
    assert isinstance(h.rules.heartbeat(18.1)[0], CloseNow)


def test_a_ping_gets_a_pong_echoing_its_ts() -> None:
    h = Harness()
    assert frames(h.receive({"type": "ping", "ts": "abc"})) == [{"type": "pong", "ts": "abc"}]
    assert frames(h.receive({"type": "ping"})) == [{"type": "pong", "ts": None}]


# --- bad input: an error, never a close


@pytest.mark.parametrize(
    ("text", "code", "msg_id"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_message", None),
        ('{"type": "chat", "id": "a", "messages": []}', "invalid_message", "a"),
        (
            '{"type": "chat", "id": "a", "messages": [{"role": "user"}], "max_tokens": "5"}',
            "invalid_message",
            "a",
        ),
        ('{"type": "shout", "id": "x"}', "unknown_type", "x"),
        ('{"id": "x"}', "invalid_message", "x"),
        # Accepted by json.loads, then unsendable upstream: refused before a stream exists.
        (
            '{"type": "chat", "id": "s", "messages": [{"role": "user", "content": "\\ud800"}]}',
            "invalid_message",
            "s",
        ),
        (
            '{"type": "chat", "id": "n", "messages": [{"role": "u"}], "temperature": NaN}',
            "invalid_message",
            "n",
        ),
        (
            '{"type": "chat", "id": "d", "messages": [{"role": "u", "content": '
            + "[" * 100
            + "]" * 100
            + "}]}",
            "invalid_message",
            "d",
        ),
        # Too deep for json.loads itself: no object, so no id to name.
        (
            '{"type": "chat", "id": "d", "x": ' + "[" * 5000 + "]" * 5000 + "}",
            "invalid_message",
            None,
        ),
    ],
)
def test_bad_input_gets_an_error_with_its_id_and_the_socket_stays_open(
    text: str, code: str, msg_id: str | None
) -> None:
    frame = error(Harness().receive(text))
    assert frame["code"] == code and frame["retryable"] is False
    assert frame.get("id") == msg_id and "stream_id" not in frame


def test_a_binary_frame_gets_binary_not_supported() -> None:
    frame = error(Harness().receive(None))
    assert frame["code"] == "binary_not_supported" and "id" not in frame


def test_over_the_message_rate_a_message_is_dropped_with_rate_limited() -> None:
    h = Harness(SETTINGS.model_copy(update={"messages_per_second": 1.0, "message_burst": 2}))
    ping = {"type": "ping", "ts": 1}
    assert frames(h.receive(ping)) == frames(h.receive(ping)) == [{"type": "pong", "ts": 1}]
    frame = error(h.receive(chat("a")))  # dropped: no generation for it
    assert frame["code"] == "rate_limited" and frame["retryable"] is True
    assert frame["message"] == "more than 1 messages per second; message dropped"
    assert frames(h.receive(ping, now=1.0)) == [{"type": "pong", "ts": 1}]


# --- chat


def test_a_new_chat_starts_a_generation_of_this_session_with_the_resume_grace() -> None:
    h = Harness()
    [decision] = h.receive(chat("a", max_tokens=5, metadata={"k": "v"}))
    assert decision == Generate(
        "a",
        {
            "model": SETTINGS.default_model,
            "messages": MESSAGES,
            "max_tokens": 5,
            "metadata": {"k": "v"},
        },
        "session-0",
        7.0,
    )


def test_a_new_chat_never_cancels_another() -> None:
    h = Harness()
    h.follow(h.stream("a", tokens=3))
    [decision] = h.receive(chat("b"))
    assert isinstance(decision, Generate) and decision.chat_id == "b"


def test_a_resent_id_is_idempotent_it_replays_after_after_and_starts_nothing() -> None:
    h = Harness()
    record = h.stream("a", tokens=5)
    h.follow(record)
    assert h.receive(chat("a", after=2)) == [Follow(record, "a", 2)]
    record.finish(1.0, "stop", None)
    assert h.receive(chat("a")) == [Follow(record, "a", -1)]  # an ended stream replays too


def test_a_resend_on_a_new_socket_with_the_session_token_follows_the_old_stream() -> None:
    h = Harness()
    earlier = h.new_session("alice")
    record = h.stream("a", session=earlier, tokens=5)
    resent = chat("a", after=4, resume_token=earlier.resume_token)
    assert h.receive(resent) == [Follow(record, "a", 4)]


def test_a_resend_with_the_session_token_finds_a_stream_this_session_started() -> None:
    h = Harness()
    earlier = h.new_session("alice")
    record = h.stream("a", tokens=1)
    resent = chat("a", resume_token=earlier.resume_token)
    assert h.receive(resent) == [Follow(record, "a", -1)]


@pytest.mark.parametrize("token", ["no-such-token", "session-token-1"])
def test_a_resume_token_of_another_client_or_none_at_all_is_forbidden(token: str) -> None:
    h = Harness()
    mallory = h.new_session("mallory")  # session-token-1 is hers
    h.stream("a", session=mallory, tokens=3)
    frame = error(h.receive(chat("a", resume_token=token)))
    assert frame["code"] == "forbidden" and frame["id"] == "a"


def test_a_resend_of_an_abandoned_stream_gets_stream_expired_not_a_new_generation() -> None:
    h = Harness()
    record = h.stream("a", tokens=3)
    record.cancel(1.0, "no reader within the resume grace period", "stream_expired")
    frame = error(h.receive(chat("a")))
    assert frame["code"] == "stream_expired"
    assert frame["id"] == "a" and frame["stream_id"] == record.stream_id


def test_while_shutting_down_a_new_chat_gets_server_shutdown_but_a_resend_replays() -> None:
    h = Harness()
    frame = error(h.receive(chat("new"), shutting_down=True))
    assert frame["code"] == "server_shutdown" and frame["retryable"] is True
    record = h.stream("old", tokens=2)
    assert h.receive(chat("old"), shutting_down=True) == [Follow(record, "old", -1)]


def test_an_id_this_socket_follows_from_another_session_is_in_use() -> None:
    h = Harness()
    other = h.new_session("alice")
    live = h.stream("a", session=other, tokens=1)
    h.follow(live)
    frame = error(h.receive(chat("a")))
    assert frame["code"] == "invalid_message" and frame["message"] == "id 'a' is already in use"
    live.finish(1.0, "stop", None)
    [decision] = h.receive(chat("a"))  # once that stream ended, the id is free again
    assert isinstance(decision, Generate)


def test_one_chat_over_max_streams_gets_too_many_streams_ended_ones_do_not_count() -> None:
    h = Harness()
    first, second = h.stream("a", tokens=1), h.stream("b", tokens=1)
    h.follow(first)
    h.follow(second)
    frame = error(h.receive(chat("c")))
    assert frame["code"] == "too_many_streams" and frame["retryable"] is True
    assert frame["id"] == "c" and frame["message"] == "at most 2 streams per connection"
    first.finish(1.0, "stop", None)
    [decision] = h.receive(chat("c"))
    assert isinstance(decision, Generate)


# --- cancel


def test_cancel_of_a_followed_stream_leaves_the_answer_to_its_follower() -> None:
    h = Harness()
    record = h.stream("a", tokens=3)
    h.follow(record)
    assert h.receive({"type": "cancel", "id": "a"}) == [Cancel(record)]


def test_cancel_of_a_stream_nobody_here_follows_is_answered_with_index_minus_one() -> None:
    h = Harness()
    record = h.stream("a", tokens=3)
    decisions = h.receive({"type": "cancel", "id": "a"})
    assert decisions[0] == Cancel(record)
    assert frames(decisions[1:]) == [{"type": "cancelled", "id": "a", "index": -1}]


def test_cancel_of_an_unknown_or_ended_id_gets_unknown_stream() -> None:
    h = Harness()
    frame = error(h.receive({"type": "cancel", "id": "zz"}))
    assert frame["code"] == "unknown_stream" and frame["id"] == "zz"
    assert frame["message"] == "no active stream with id 'zz' (unknown)"
    ended = h.stream("a", tokens=1)
    ended.finish(1.0, "stop", None)
    h.follow(ended)
    frame = error(h.receive({"type": "cancel", "id": "a"}))
    assert frame["message"] == "no active stream with id 'a' (already ended)"


# --- resume by stream id


def resume(record: StreamRecord | str, token: str, after: int = -1) -> dict[str, Any]:
    stream_id = record if isinstance(record, str) else record.stream_id
    return {"type": "resume", "stream_id": stream_id, "after": after, "resume_token": token}


@pytest.mark.parametrize("token", ["stream-token-a", "session-token-0"])
def test_resume_with_the_stream_or_the_session_token_replays_after_after(token: str) -> None:
    h = Harness()
    record = h.stream("a", tokens=8)
    assert h.receive(resume(record, token, after=6)) == [Follow(record, "a", 6)]


def test_resume_with_a_wrong_token_is_forbidden() -> None:
    h = Harness()
    record = h.stream("a", tokens=3)
    frame = error(h.receive(resume(record, "stream-token-b")))
    assert frame["code"] == "forbidden" and frame["stream_id"] == record.stream_id
    assert "id" not in frame


def test_resume_of_an_unknown_stream_and_of_one_past_its_retention() -> None:
    h = Harness()
    frame = error(h.receive(resume("nope", "t")))
    assert (frame["code"], frame["stream_id"]) == ("unknown_stream", "nope")
    record = h.stream("a", tokens=3)
    h.store.remove(record.stream_id)  # what the reaper does after stream_retention_s
    frame = error(h.receive(resume(record, "stream-token-a")))
    assert (frame["code"], frame["stream_id"]) == ("stream_expired", record.stream_id)


def test_resume_of_an_abandoned_stream_gets_stream_expired() -> None:
    h = Harness()
    record = h.stream("a", tokens=3)
    record.cancel(1.0, "no reader within the resume grace period", "stream_expired")
    frame = error(h.receive(resume(record, "stream-token-a")))
    assert frame["code"] == "stream_expired"
    assert frame["id"] == "a" and frame["stream_id"] == record.stream_id


def test_resume_counts_against_the_stream_limit_unless_this_socket_follows_it() -> None:
    h = Harness()
    first, second = h.stream("a", tokens=1), h.stream("b", tokens=1)
    h.follow(first)
    h.follow(second)
    third = h.stream("c", tokens=1)
    frame = error(h.receive(resume(third, "stream-token-c")))
    assert frame["code"] == "too_many_streams" and frame["id"] == "c"
    assert h.receive(resume(first, "stream-token-a", after=0)) == [Follow(first, "a", 0)]


# --- tutorial shape


def test_tutorial_messages_are_queued_one_body_each() -> None:
    h = Harness(tutorial=True)
    assert h.receive({"message": "hello"}) == [
        QueueTutorial(
            {"model": SETTINGS.default_model, "messages": [{"role": "user", "content": "hello"}]}
        )
    ]


def test_tutorial_bad_input_gets_a_tutorial_error_frame() -> None:
    h = Harness(tutorial=True)
    [bad] = h.receive("{nope")
    assert isinstance(bad, Send) and json.loads(bad.frame)["type"] == "error"
    assert json.loads(bad.frame)["message"].startswith("invalid_json: ")
    [surrogate] = h.receive('{"message": "\\udfff"}')
    assert isinstance(surrogate, Send)
    assert json.loads(surrogate.frame)["message"].startswith("invalid_message: frame holds a lone")
    [binary] = h.receive(None)
    assert isinstance(binary, Send)
    assert json.loads(binary.frame) == {
        "type": "error",
        "message": "binary_not_supported: binary frames are not supported; send JSON text",
    }


# --- the frames that end a followed stream


def test_end_carries_the_token_count_and_the_provider_finish_and_usage() -> None:
    record = Harness().stream("a", tokens=4)
    record.finish(1.0, "length", {"completion_tokens": 4})
    assert record.outcome is not None
    assert json.loads(outcome_frame(record, "a", record.outcome, 3)) == {
        "type": "end",
        "id": "a",
        "finish_reason": "length",
        "usage": {"completion_tokens": 4},
        "tokens": 4,
    }


def test_cancelled_carries_the_last_index_this_reader_got() -> None:
    record = Harness().stream("a", tokens=4)
    record.cancel(1.0, "cancelled by client")
    assert record.outcome is not None
    frame = json.loads(outcome_frame(record, "a", record.outcome, 2))
    assert frame == {"type": "cancelled", "id": "a", "index": 2}


def test_an_abandoned_stream_ends_with_a_retryable_stream_expired() -> None:
    record = Harness().stream("a", tokens=1)
    record.cancel(1.0, "no reader within the resume grace period", "stream_expired")
    assert record.outcome is not None
    frame = json.loads(outcome_frame(record, "a", record.outcome, 0))
    assert frame["type"] == "error" and frame["code"] == "stream_expired"
    assert frame["retryable"] is True and frame["stream_id"] == record.stream_id


def test_a_failed_stream_ends_with_its_error_and_retryable_flag() -> None:
    record = Harness().stream("a", tokens=1)
    record.fail(1.0, "upstream_timeout", "stalled", False)
    assert record.outcome is not None
    frame = json.loads(outcome_frame(record, "a", record.outcome, 0))
    assert frame == {
        "type": "error",
        "id": "a",
        "stream_id": record.stream_id,
        "code": "upstream_timeout",
        "message": "stalled",
        "retryable": False,
    }


def test_a_tool_call_frame_shares_the_token_index_sequence() -> None:
    record = Harness().stream("a", tokens=2)
    event = record.add_tool_call(0, "call_1", "lookup", '{"q":')
    assert json.loads(tool_call_frame("a", event)) == {
        "type": "tool_call",
        "id": "a",
        "index": 2,
        "call_index": 0,
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"q":',
    }

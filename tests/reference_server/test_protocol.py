"""Protocol v1 parsing and encoding: dicts in, models or errors out."""

from __future__ import annotations

import json

import pytest

from reference_server.errors import ProtocolError
from reference_server.protocol import (
    CancelRequest,
    ChatRequest,
    End,
    Error,
    HttpChatRequest,
    PingRequest,
    ResumeRequest,
    Token,
    ToolCall,
    encode,
    parse_client_message,
    parse_http_chat,
    parse_tutorial_message,
    token_frame,
    token_frame_prefix,
    tutorial_end,
    tutorial_token,
)


def parse(obj: object) -> object:
    return parse_client_message(json.dumps(obj))


def error_of(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    return info.value


def test_chat_parses_with_defaults_and_ignores_unknown_fields() -> None:
    msg = parse(
        {"type": "chat", "id": "a", "messages": [{"role": "user", "content": "hi"}], "x": 1}
    )
    assert msg == ChatRequest(id="a", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(msg, ChatRequest)
    assert msg.after == -1
    assert msg.resume_token is None


def test_other_client_messages() -> None:
    assert parse({"type": "cancel", "id": "a"}) == CancelRequest(id="a")
    assert parse({"type": "resume", "stream_id": "s", "after": 3, "resume_token": "t"}) == (
        ResumeRequest(stream_id="s", after=3, resume_token="t")
    )
    assert parse({"type": "ping", "ts": 5}) == PingRequest(ts=5)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"id": "a"}', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "chat", "id": 5, "messages": [{"role": "user"}]}', "invalid_message"),
        ('{"type": "chat", "id": "a", "messages": []}', "invalid_message"),
        ('{"type": "chat", "id": "a", "messages": [{"content": "x"}]}', "invalid_message"),
        ('{"type": "chat", "id": "a", "messages": "hi"}', "invalid_message"),
        (
            '{"type": "chat", "id": "a", "messages": [{"role": "u"}], "max_tokens": "5"}',
            "invalid_message",
        ),
        (
            '{"type": "resume", "stream_id": "s", "after": -2, "resume_token": "t"}',
            "invalid_message",
        ),
        ('{"type": "cancel"}', "invalid_message"),
    ],
)
def test_bad_input_gets_the_right_code(text: str, code: str) -> None:
    assert error_of(text).code == code


def test_invalid_message_keeps_the_id_and_names_the_field() -> None:
    exc = error_of('{"type": "chat", "id": "a7", "messages": [{"role": "u"}], "max_tokens": "5"}')
    assert exc.msg_id == "a7"
    assert "max_tokens" in exc.message


def test_invalid_utf8_bytes_are_invalid_json() -> None:
    assert error_of(b"\xff\xfe").code == "invalid_json"


def test_a_lone_surrogate_is_invalid_message_with_the_id() -> None:
    exc = error_of(
        '{"type": "chat", "id": "a7", "messages": [{"role": "u", "content": "\\ud800"}]}'
    )
    assert (exc.code, exc.msg_id) == ("invalid_message", "a7")


def test_http_chat_body() -> None:
    body = b'{"id": "h1", "messages": [{"role": "user"}], "resume_token": "rt"}'
    assert parse_http_chat(body) == HttpChatRequest(
        id="h1", messages=[{"role": "user"}], resume_token="rt"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{nope", "invalid_json"),
        (b'"a string"', "invalid_message"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_message"),
        (b'{"messages": [{"role": "user"}], "resume_token": 5}', "invalid_message"),
    ],
)
def test_http_chat_bad_body(body: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_http_chat(body)
    assert info.value.code == code


def test_encode_is_compact_and_omits_only_optional_nones() -> None:
    assert json.loads(encode(Token(id="a", index=0, content="Hi"))) == {
        "type": "token",
        "id": "a",
        "index": 0,
        "content": "Hi",
    }
    end = json.loads(encode(End(id="a", finish_reason="stop", usage=None, tokens=3)))
    assert end == {"type": "end", "id": "a", "finish_reason": "stop", "usage": None, "tokens": 3}
    err = json.loads(encode(Error(code="invalid_json", message="m")))
    assert err == {"type": "error", "code": "invalid_json", "message": "m", "retryable": False}
    call = json.loads(encode(ToolCall(id="a", index=1, call_index=0, arguments="{")))
    assert "name" not in call and call["arguments"] == "{"


_AWKWARD = ["Hi", "", 'a"b\\c', "\n\t\x00\x1f\x7f", "é😀", "\u2028\u2029", "</script>", "\ud800"]


@pytest.mark.parametrize("content", _AWKWARD)
@pytest.mark.parametrize("chat_id", ["a", 'x"y', "é", "\\"])
def test_fast_token_frame_is_byte_identical_to_the_model_encoding(
    chat_id: str, content: str
) -> None:
    # The hot path skips pydantic; clients must not be able to tell.
    fast = token_frame(token_frame_prefix(chat_id), 41, content)
    assert fast == encode(Token(id=chat_id, index=41, content=content))
    assert json.loads(fast) == {"type": "token", "id": chat_id, "index": 41, "content": content}


@pytest.mark.parametrize("content", _AWKWARD)
def test_tutorial_token_matches_json_dumps(content: str) -> None:
    expected = json.dumps({"type": "token", "content": content}, ensure_ascii=False)
    assert tutorial_token(content) == expected


def test_tutorial_shapes() -> None:
    req = parse_tutorial_message('{"messages": [{"role": "user", "content": "x"}], "model": "m"}')
    assert req.model == "m"
    assert parse_tutorial_message('{"message": "hey"}').messages == [
        {"role": "user", "content": "hey"}
    ]
    with pytest.raises(ProtocolError):
        parse_tutorial_message('{"model": "m"}')
    assert json.loads(tutorial_token("a")) == {"type": "token", "content": "a"}
    assert json.loads(tutorial_end()) == {"type": "end"}

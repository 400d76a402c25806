"""Wire contracts, round trip, in memory: each side's encoder against the other side's decoder.

Protocol v1: every server message the server encodes means the same to the client library
(``scenarios/clients/v1.py``), and every frame the client library sends is what the server's
parser accepts, with frames taken from ``docs/protocol.md``'s ```json blocks (so the docs
cannot drift). SSE: the one encoder and decoder (``mockllm/sse.py``) against each other, the
docs' SSE stream, and the mock's chunks read back by the reference server's upstream decoder.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from mockllm.control import resolve
from mockllm.errors import InvalidRequest, error_body
from mockllm.formats.openai_chat import ChunkEncoder
from mockllm.generation import build_plan, stream_script
from mockllm.request import parse_chat_request
from mockllm.sse import DONE, SSEComment, SSEEvent, SSEParser, comment, encode, retry
from reference_server.protocol import (
    PROTOCOL_V1,
    ClientMessage,
    ServerMessage,
    parse_client_message,
    token_frame,
    token_frame_prefix,
)
from reference_server.protocol import encode as server_encode
from reference_server.providers import UpstreamFinish, UpstreamToken
from reference_server.providers.openai_chat import EventDecoder
from scenarios.clients.records import StreamRecord
from scenarios.clients.sse import SSERecorder
from scenarios.clients.v1 import (
    PROTOCOL,
    V1Cancelled,
    V1End,
    V1Error,
    V1Event,
    V1Hello,
    V1Ping,
    V1Pong,
    V1Start,
    V1Token,
    V1ToolCall,
    decode_v1,
    encode_cancel,
    encode_chat,
    encode_ping,
    encode_pong,
    encode_resume,
)

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _section(heading: str) -> str:
    """The text of ``docs/protocol.md`` under ``heading``, up to the next heading of any level."""
    text = PROTOCOL_DOC.read_text()
    start = text.index(f"{heading}\n")
    end = re.compile(r"^#", re.M).search(text, start + len(heading) + 1)
    return text[start : end.start() if end else len(text)]


def _blocks(heading: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(heading), re.S)


def _doc_frames(heading: str) -> list[str]:
    (block,) = _blocks(heading, "json")
    return [line for line in block.splitlines() if line.strip()]


CLIENT_FRAMES = _doc_frames("### Client → server")
SERVER_FRAMES = _doc_frames("### Server → client")


def _type_of(model: Any) -> str:
    return str(model.model_fields["type"].default)


# --- protocol v1, server -> client ------------------------------------------------------

SERVER_MODELS: dict[str, Any] = {_type_of(m): m for m in get_args(ServerMessage)}
CLIENT_EVENTS: dict[str, type] = {
    "hello": V1Hello,
    "start": V1Start,
    "token": V1Token,
    "tool_call": V1ToolCall,
    "end": V1End,
    "cancelled": V1Cancelled,
    "error": V1Error,
    "ping": V1Ping,
    "pong": V1Pong,
}


def _same_meaning(frame: dict[str, Any], event: V1Event) -> None:
    """Every field of the frame reaches the client under its name, with its value; a field the
    frame leaves out keeps the client's default."""
    assert type(event) is CLIENT_EVENTS[frame["type"]]
    assert dataclasses.is_dataclass(event)
    fields = {f.name: f for f in dataclasses.fields(event)}
    sent = {k: v for k, v in frame.items() if k != "type"}
    assert set(sent) <= set(fields), f"the client drops {sorted(set(sent) - set(fields))}"
    for name, field in fields.items():
        got = getattr(event, name)
        if name in sent:
            assert got == sent[name], name
        elif field.default is not dataclasses.MISSING:
            assert got == field.default, name
        else:
            raise AssertionError(f"{name} is required by the client but the server omitted it")


def test_the_docs_show_every_server_message() -> None:
    assert {json.loads(f)["type"] for f in SERVER_FRAMES} == set(SERVER_MODELS)
    assert set(SERVER_MODELS) == set(CLIENT_EVENTS)


@pytest.mark.parametrize("line", SERVER_FRAMES, ids=lambda f: json.loads(f)["type"])
def test_server_message_encoded_then_decoded_by_the_client(line: str) -> None:
    frame = json.loads(line)
    message = SERVER_MODELS[frame["type"]].model_validate(frame)
    encoded = server_encode(message)
    assert encoded == line  # the docs show the server's bytes
    _same_meaning(frame, decode_v1(encoded))


@pytest.mark.parametrize("content", ["Hel", "", ' "quoted" \\ \n\t', "héllo 😀", "</script>"])
def test_the_token_fast_path_is_the_encoder_and_the_client_reads_it(content: str) -> None:
    frame = token_frame(token_frame_prefix('a/b"c'), 7, content)
    message = SERVER_MODELS["token"](id='a/b"c', index=7, content=content)
    assert frame == server_encode(message)
    assert decode_v1(frame) == V1Token('a/b"c', 7, content)


def test_one_subprotocol_name() -> None:
    assert PROTOCOL is PROTOCOL_V1 == json.loads(SERVER_FRAMES[0])["protocol"]


# --- protocol v1, client -> server ------------------------------------------------------

CLIENT_MODELS: dict[str, Any] = {_type_of(m): m for m in get_args(ClientMessage)}
_ENCODERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "chat": lambda f: encode_chat(**{k: v for k, v in f.items() if k != "type"}),
    "cancel": lambda f: encode_cancel(f["id"]),
    "resume": lambda f: encode_resume(f["stream_id"], f["after"], f["resume_token"]),
    "ping": lambda f: encode_ping(f.get("ts")),
    "pong": lambda f: encode_pong(f.get("ts")),
}


def test_the_docs_show_every_client_message() -> None:
    assert {json.loads(f)["type"] for f in CLIENT_FRAMES} == set(CLIENT_MODELS) == set(_ENCODERS)


def _parsed_as_sent(encoded: str) -> None:
    frame = json.loads(encoded)
    parsed = parse_client_message(encoded)
    assert type(parsed) is CLIENT_MODELS[frame["type"]]
    assert {k: getattr(parsed, k) for k in frame} == frame


@pytest.mark.parametrize("line", CLIENT_FRAMES, ids=lambda f: json.loads(f)["type"])
def test_client_frame_encoded_by_the_library_then_parsed_by_the_server(line: str) -> None:
    frame = json.loads(line)
    encoded = _ENCODERS[frame["type"]](frame)
    assert encoded == line  # the docs show the client library's bytes
    _parsed_as_sent(encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        encode_chat(
            "b",
            [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
            temperature=0.2,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice="auto",
            metadata={"mock_tokens": "3"},
        ),
        encode_ping(),
        encode_pong(),
        encode_ping(12),
        encode_resume("st", -1, "rt"),
    ],
)
def test_every_shape_the_library_sends_is_accepted(encoded: str) -> None:
    _parsed_as_sent(encoded)


# --- SSE ----------------------------------------------------------------------------------


def _decode_all(body: bytes, *, piecewise: bool) -> list[SSEEvent | SSEComment]:
    parser = SSEParser()
    out: list[SSEEvent | SSEComment] = []
    pieces = [body[i : i + 1] for i in range(len(body))] if piecewise else [body]
    for piece in pieces:
        out += parser.feed(piece)
    assert not parser.truncated
    return out + parser.feed_eof()


@pytest.mark.parametrize("piecewise", [False, True], ids=["whole", "byte-by-byte"])
def test_sse_encode_then_decode(piecewise: bool) -> None:
    body = (
        retry(1500)
        + encode('{"a":1}')
        + comment("ping")
        + encode("line one\nline two\r\nline three", event="token", id="4")
        + comment()
        + encode("", event="empty")
        + encode("é😀 \r ok", id="5")
        + DONE
    )
    parser = SSEParser()
    decoded = _decode_all(body, piecewise=piecewise)
    assert decoded == [
        SSEEvent('{"a":1}'),
        SSEComment("ping"),
        SSEEvent("line one\nline two\nline three", "token", "4"),
        SSEComment(""),
        SSEEvent("", "empty", "4"),  # the last event id carries over
        SSEEvent("é😀 \n ok", "message", "5"),
        SSEEvent("[DONE]", "message", "5"),
    ]
    parser.feed(body)
    assert parser.retry_ms == 1500


def test_the_docs_sse_stream_is_what_the_server_encodes_and_the_client_records() -> None:
    (block,) = _blocks("## SSE (`GET /v1/streams/{stream_id}/events`)", "text")
    body = (block + "\n").encode()
    parser = SSEParser()
    items = parser.feed(body) + parser.feed_eof()
    assert parser.retry_ms == 1000
    encoded = retry(1000)
    for item in items:
        if isinstance(item, SSEComment):
            encoded += comment(item.text)
            continue
        data = json.loads(item.data)
        assert item.event == data["type"]
        message = SERVER_MODELS[data["type"]].model_validate(data)
        # the framing rule of the SSE transport: the event's name is the message's type
        encoded += encode(server_encode(message), event=message.type, id=item.id)
    assert encoded == body
    record = StreamRecord(transport="sse", id="q1", sent_at=0.0)
    recorder = SSERecorder(record)
    for t, item in enumerate(items):
        recorder.handle(item, float(t))
    assert (record.stream_id, record.resume_token) == ("st-3b7e", "rt-st-c41a")
    assert [a.index for a in record.arrivals] == [0, 1]
    assert record.text == "Hello"
    assert (record.outcome, record.finish_reason) == ("completed", "stop")
    assert record.expected_tokens == 2
    assert recorder.heartbeats == 1 and record.last_event_id == "2"


def _mock_stream(tokens: int, **body: Any) -> tuple[list[bytes], list[str]]:
    request = parse_chat_request(
        {"model": "mock-instant", "messages": [{"role": "user", "content": "hi"}], **body}
    )
    control = resolve(
        model=request.model,
        default_profile="instant",
        rule=None,
        rule_id=None,
        headers={"tokens": tokens},
        directive={},
    )
    plan = build_plan(request, control, messages=request.messages, server_seed=3, sequence=1)
    script = stream_script(plan, created=1700000000, include_usage=request.include_usage)
    return [event for _, event, _, _ in script.events()], list(plan.choices[0].tokens)


def test_the_mock_stream_read_back_by_the_servers_upstream_decoder() -> None:
    events, tokens = _mock_stream(25, stream=True, stream_options={"include_usage": True})
    for write in events:  # each write holds whole SSE events: a JSON chunk or the [DONE] line
        parser = SSEParser()
        decoded = parser.feed(write) + parser.feed_eof()
        assert decoded and not parser.truncated
        for event in decoded:
            assert isinstance(event, SSEEvent)
            assert event.data == "[DONE]" or isinstance(json.loads(event.data), dict)
    assert events[-1].endswith(DONE)
    decoder = EventDecoder()
    out = [e for event in events for e in decoder.feed(event)]
    assert [e.content for e in out if isinstance(e, UpstreamToken)] == tokens
    finish = out[-1]
    assert isinstance(finish, UpstreamFinish) and finish.finish_reason == "stop"
    assert finish.usage is not None and finish.usage["completion_tokens"] == 25
    assert decoder.done


def test_one_openai_error_shape() -> None:
    error = InvalidRequest("bad", param="model", code="x")
    assert error.body() == error_body("bad", "invalid_request_error", param="model", code="x")
    (event,) = SSEParser().feed(ChunkEncoder("c", 1, "m").error("boom", code="e"))
    assert isinstance(event, SSEEvent)
    assert json.loads(event.data) == error_body("boom", "server_error", code="e")

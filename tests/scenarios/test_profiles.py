"""Target profiles: validation with located errors, extends, frame reading, request templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.clients.records import StreamRecord
from scenarios.profiles import (
    Frame,
    FrameReader,
    ProfileError,
    ProfileRecorder,
    RequestValues,
    UnknownProfileError,
    builtin_names,
    load_profile,
    parse_profile,
)
from scenarios.profiles.frames import (
    ChunkDecoder,
    End,
    Error,
    Ignored,
    LineSplitter,
    Token,
    Unreadable,
    render,
    render_text,
    render_url,
)
from scenarios.profiles.schema import parse_path

VALUES = RequestValues(
    prompt="hi there & more",
    model="mock-instant",
    messages=[{"role": "user", "content": "hi there & more"}],
    client_id="g0-1",
    stream_id="m0",
)


def test_every_builtin_profile_loads() -> None:
    names = builtin_names()
    assert {"v1", "tutorial", "openai", "ai-sdk", "ai-sdk-data", "sse-text", "ndjson"} <= set(names)
    for name in names:
        assert load_profile(name).name == name


def test_capabilities_come_from_the_profile() -> None:
    assert load_profile("v1").capabilities >= {"cancel_message", "resume", "several_streams"}
    assert load_profile("tutorial").capabilities == {"client_id_in_url"}
    assert "cancel_message" not in load_profile("ai-sdk").capabilities


def test_a_bad_profile_file_names_line_and_field(tmp_path: Path) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text(
        "transport: websocket\n"
        "url: /chat\n"
        "text: '{prompt}'\n"
        "format: text\n"
        "frames:\n"
        "  - {kind: tokn, text: $}\n"
        "  - {kind: end, colour: red}\n"
    )
    with pytest.raises(ProfileError) as info:
        load_profile(file)
    lines = info.value.lines()
    assert any(line.startswith(f"{file}:6: frames[0].kind:") for line in lines), lines
    assert f"{file}:7: frames[1].colour: unknown field" in lines


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("transport: sse\nurl: chat\nformat: text\nframes: [{kind: token, text: $}]", "url"),
        ("transport: sse\nmethod: GET\nformat: text\nframes: [{kind: end}]", "no token rule"),
        (
            "transport: sse\nmethod: GET\nbody: {a: 1}\nframes: [{kind: token, text: $}]",
            "a GET request has no body",
        ),
        (
            "transport: websocket\ntext: '{promt}'\nframes: [{kind: token, text: $}]",
            "unknown placeholder {promt}",
        ),
        ("transport: websocket\nframes: [{kind: token, text: $}]", "give 'body' or 'text'"),
        (
            "transport: sse\nmethod: GET\nframes: [{kind: token, text: 'a..b'}]",
            "bad path",
        ),
        ("transport: carrier-pigeon\n", "transport"),
        ("transport: websocket\ntransport: sse\n", "duplicate key"),
        ("- a list\n", "must be a YAML mapping"),
    ],
)
def test_bad_profiles_are_refused(yaml_text: str, message: str) -> None:
    text = yaml_text if yaml_text.startswith("-") else "name: mine\n" + yaml_text
    with pytest.raises(ProfileError, match=r"mine\.yaml") as info:
        parse_profile(text, "mine.yaml")
    assert message in str(info.value)


def test_unknown_profile_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(UnknownProfileError, match="did you mean tutorial"):
        load_profile("tutoral")


def test_extends_a_builtin_and_overrides_keys(tmp_path: Path) -> None:
    file = tmp_path / "my_app.yaml"
    file.write_text("extends: sse-text\nurl: /api/stream?q={prompt}\nheaders: {X-Key: k}\n")
    profile = load_profile(file)
    assert profile.name == "my_app"
    assert profile.url == "/api/stream?q={prompt}"
    assert profile.frames == load_profile("sse-text").frames
    assert profile.headers == {"X-Key": "k"}


def test_extends_an_unknown_base_is_located(tmp_path: Path) -> None:
    file = tmp_path / "my_app.yaml"
    file.write_text("# mine\nextends: nope\n")
    with pytest.raises(ProfileError, match=r"my_app.yaml:2: extends: 'nope' is not a built-in"):
        load_profile(file)


def test_paths() -> None:
    assert parse_path("choices[0].delta.content") == ("choices", 0, "delta", "content")
    assert parse_path("$") == ()
    with pytest.raises(ValueError):
        parse_path("a[x]")


# ------------------------------------------------------------------------------ reading


def test_tutorial_reads_tokens_and_the_in_band_end() -> None:
    reader = FrameReader(load_profile("tutorial"))
    assert reader.read(Frame('{"type": "token", "content": "Hi"}')) == Token("Hi")
    assert reader.read(Frame('{"type": "token", "content": "[END]"}')) == End()
    assert reader.read(Frame('{"type": "end"}')) == End()
    assert reader.read(Frame('{"type": "error", "message": "boom"}')) == Error(None, "boom")
    odd = reader.read(Frame('{"type": "progress"}'))
    assert isinstance(odd, Unreadable)
    assert "no rule of profile 'tutorial'" in odd.describe()
    assert '{"type": "progress"}' in odd.describe()
    plain = reader.read(Frame("Hello"))
    assert isinstance(plain, Unreadable)
    assert "not JSON" in plain.describe()


def test_openai_chunks() -> None:
    reader = FrameReader(load_profile("openai"))
    role = '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"}}]}'
    assert reader.read(Frame(role)) == Ignored()
    chunk = (
        '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},'
        '"finish_reason":null}]}'
    )
    assert reader.read(Frame(chunk)) == Token("Hel")
    last = (
        '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
        '"finish_reason":"stop"}]}'
    )
    assert reader.read(Frame(last)) == Ignored("stop")
    error = '{"error": {"message": "overloaded", "type": "server_error", "code": "x"}}'
    assert reader.read(Frame(error)) == Error("x", "overloaded")
    assert reader.read(Frame("[DONE]")) == End()


def test_ai_sdk_ui_stream() -> None:
    reader = FrameReader(load_profile("ai-sdk"))
    assert reader.read(Frame('{"type":"start","messageId":"m"}')) == Ignored()
    assert reader.read(Frame('{"type":"text-delta","id":"0","delta":" the"}')) == Token(" the")
    assert reader.read(Frame('{"type":"error","errorText":"down"}')) == Error(None, "down")
    assert reader.read(Frame('{"type":"data-weather","data":{}}')) == Ignored()
    assert reader.read(Frame("[DONE]")) == Ignored()  # useChat reads to the end of the body


def test_ai_sdk_data_stream_lines() -> None:
    reader = FrameReader(load_profile("ai-sdk-data"))
    assert reader.read(Frame('0:"Hello\\n"')) == Token("Hello\n")
    assert reader.read(Frame('3:"provider down"')) == Error(None, "provider down")
    assert reader.read(Frame('e:{"finishReason":"stop"}')) == Ignored()
    assert reader.read(Frame('d:{"finishReason":"stop","usage":{"a":1}}')) == End("stop", {"a": 1})
    assert isinstance(reader.read(Frame("hello")), Unreadable)


def test_text_frames_keep_whitespace() -> None:
    reader = FrameReader(load_profile("sse-text"))
    assert reader.read(Frame("  two\n\tlines ")) == Token("  two\n\tlines ")
    assert reader.read(Frame("[DONE]")) == End()


def test_json_values_compare_with_their_type() -> None:
    profile = parse_profile(
        "name: p\ntransport: sse\nmethod: GET\nframes:\n"
        "  - {match: {done: true}, kind: end}\n"
        "  - {has: t, kind: token, text: t}\n",
        "p.yaml",
    )
    reader = FrameReader(profile)
    assert reader.read(Frame('{"done": true}')) == End()
    assert isinstance(reader.read(Frame('{"done": 1}')), Unreadable)


def test_a_token_whose_text_is_not_a_string_is_unreadable() -> None:
    reader = FrameReader(load_profile("sse-json"))
    event = reader.read(Frame('{"content": 5}'))
    assert isinstance(event, Unreadable)
    assert "not a string" in event.why


def test_line_splitter_and_chunks() -> None:
    lines = LineSplitter()
    assert lines.feed(b'0:"a"\r\n0:"b') == ['0:"a"']
    assert lines.feed(b'"\n\n') == ['0:"b"']
    assert lines.feed(b"\xc3") == []
    assert lines.feed_eof() == ["\ufffd"]
    chunks = ChunkDecoder()
    assert chunks.feed("é".encode()[:1]) == []
    assert chunks.feed("é".encode()[1:] + b"x") == ["éx"]


# ---------------------------------------------------------------------------- recording


def _record(name: str = "m0") -> StreamRecord:
    return StreamRecord(transport="ws", id=name, sent_at=0.0)


def test_recorder_tokens_end_and_stray_frames() -> None:
    recorder = ProfileRecorder(load_profile("tutorial"))
    record = recorder.begin(_record(), 0.0)
    recorder.handle(Frame('{"type": "token", "content": "a"}'), 0.1)
    recorder.handle(Frame('{"type": "token", "content": ""}'), 0.15)
    recorder.handle(Frame('{"type": "token", "content": "[END]"}'), 0.2)
    assert record.text == "a"
    assert [a.index for a in record.arrivals] == [0]
    assert (record.outcome, record.ended_at) == ("completed", 0.2)
    recorder.handle(Frame('{"type": "token", "content": "late"}'), 0.3)
    assert recorder.stray == [Token("late")]


def test_recorder_reports_an_unreadable_frame_as_a_protocol_error() -> None:
    recorder = ProfileRecorder(load_profile("tutorial"))
    record = recorder.begin(_record(), 0.0)
    recorder.handle(Frame("Hello"), 0.1)
    assert record.outcome == "error"
    assert record.error_code == "protocol_error"
    assert "'Hello'" in (record.error_message or "")
    assert len(recorder.unreadable) == 1


def test_recorder_idle_end() -> None:
    recorder = ProfileRecorder(load_profile("ws-text"))
    record = recorder.begin(_record(), 0.0)
    assert not recorder.idle(5.0)  # no token yet: a slow first token is not an end
    recorder.handle(Frame("a"), 1.0)
    assert not recorder.idle(2.0)
    assert recorder.idle(2.6)
    assert (record.outcome, record.finish_reason, record.ended_at) == ("completed", "idle", 2.5)


@pytest.mark.parametrize(
    ("profile", "clean", "code", "outcome", "error_code"),
    [
        ("ws-text", True, 1000, "completed", None),
        ("ws-text", False, 1006, "error", "closed"),
        ("tutorial", True, 1000, "error", "closed"),
        ("http-text", True, None, "completed", None),
        ("http-text", False, None, "error", "cut"),
        ("sse-text", True, None, "error", "cut"),
    ],
)
def test_recorder_close(
    profile: str, clean: bool, code: int | None, outcome: str, error_code: str | None
) -> None:
    recorder = ProfileRecorder(load_profile(profile))
    record = recorder.begin(_record(), 0.0)
    recorder.closed(1.0, clean, code)
    assert (record.outcome, record.error_code) == (outcome, error_code)


def test_a_new_message_supersedes_the_open_one() -> None:
    recorder = ProfileRecorder(load_profile("tutorial"))
    first = recorder.begin(_record("a"), 0.0)
    second = recorder.begin(_record("b"), 0.5)
    assert first.outcome == "cancelled"
    assert recorder.current is second


# ---------------------------------------------------------------------------- templates


def test_body_templates() -> None:
    body = render(load_profile("openai").body, VALUES)
    assert body == {
        "model": "mock-instant",
        "messages": [{"role": "user", "content": "hi there & more"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    ai = render(load_profile("ai-sdk").body, VALUES)
    assert ai["messages"][0]["parts"] == [{"type": "text", "text": "hi there & more"}]
    assert ai["id"] == "m0"
    assert render("say {prompt} {{literally}}", VALUES) == "say hi there & more {literally}"


def test_url_templates_are_encoded() -> None:
    assert render_url("/stream?prompt={prompt}&c={client_id}", VALUES) == (
        "/stream?prompt=hi%20there%20%26%20more&c=g0-1"
    )


def test_a_close_keeps_the_finish_reason_an_ignored_frame_gave() -> None:
    recorder = ProfileRecorder(load_profile("ai-sdk"))
    record = recorder.begin(_record(), 0.0)
    recorder.handle(Frame('{"type":"text-delta","id":"0","delta":"a"}'), 0.1)
    recorder.handle(Frame('{"type":"finish","finishReason":"length"}'), 0.2)
    recorder.handle(Frame("[DONE]"), 0.3)
    recorder.closed(0.4, clean=True)
    assert (record.outcome, record.finish_reason) == ("completed", "length")


def test_frames_after_the_end_are_noted() -> None:
    recorder = ProfileRecorder(load_profile("tutorial"))
    recorder.begin(_record(), 0.0)
    for content in ("a", "[END]", " rest", " of it"):
        recorder.handle(Frame(f'{{"type": "token", "content": "{content}"}}'), 0.1)
    recorder.handle(Frame("oops"), 0.2)
    assert recorder.notes() == [
        "2 tokens arrived after the stream had ended: ' rest of it'",
        "protocol error: a not JSON frame that no rule of profile 'tutorial' reads: frame 'oops'",
    ]
    assert recorder.notes() == []  # each reported once


def test_a_text_template_renders_lists_as_json() -> None:
    assert render_text("history: {messages}", VALUES) == (
        'history: [{"role": "user", "content": "hi there & more"}]'
    )
    assert render_text("{messages}", VALUES).startswith('[{"role"')


def test_jsonpath_and_text_frame_fields_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not JSONPath \(write 'delta'"):
        parse_path("$.delta")
    with pytest.raises(ProfileError, match="a 'text' frame has no fields"):
        parse_profile(
            "name: p\ntransport: sse\nmethod: GET\nformat: text\n"
            "frames: [{kind: token, text: content}]\n",
            "p.yaml",
        )


def test_extends_switches_the_request_kind(tmp_path: Path) -> None:
    text_file = tmp_path / "t.yaml"
    text_file.write_text("extends: tutorial\ntext: '{prompt}'\n")
    assert (load_profile(text_file).text, load_profile(text_file).body) == ("{prompt}", None)
    get_file = tmp_path / "g.yaml"
    get_file.write_text("extends: sse-json\nmethod: GET\nurl: /s?q={prompt}\n")
    assert load_profile(get_file).body is None

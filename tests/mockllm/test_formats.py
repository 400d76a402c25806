"""What every wire format shares: the same text for the same request content and seed, rules and
controls, the ledger's format, and a shutdown's last event in the format's own error shape."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from mockllm.app import MockApp
from mockllm.bench.formats import FORMAT_BODIES
from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.generation import build_plan
from mockllm.request import parse_chat_request
from mockllm.routes import FORMATS, GEMINI, route
from tests.support import wait_for_async

MODEL = "gpt-4o-mini"
SEED = {"X-Mock-Seed": "42"}


@pytest.fixture
def sdks(mock_url: str, admin: MockAdmin) -> Iterator[dict[str, Any]]:
    options = types.HttpOptions(
        base_url=mock_url, headers=SEED, retry_options=types.HttpRetryOptions(attempts=1)
    )
    with (
        openai.OpenAI(base_url=f"{mock_url}/v1", api_key="t", max_retries=0) as oa,
        anthropic.Anthropic(base_url=mock_url, api_key="t", max_retries=0) as claude,
        ollama.Client(host=mock_url, headers=SEED) as llama,
        genai.Client(api_key="t", http_options=options) as gemini,
    ):
        yield {"openai": oa, "anthropic": claude, "ollama": llama, "gemini": gemini}


def answers(sdks: dict[str, Any], prompt: str) -> dict[str, str]:
    """The text of each format's answer to the same prompt under the same seed."""
    oa, claude, llama, gemini = sdks["openai"], sdks["anthropic"], sdks["ollama"], sdks["gemini"]
    user = [{"role": "user", "content": prompt}]
    chat = oa.chat.completions.create(model=MODEL, messages=user, extra_headers=SEED)
    message = claude.messages.create(
        model=MODEL, max_tokens=1000, messages=user, extra_headers=SEED
    )
    response = oa.responses.create(model=MODEL, input=prompt, extra_headers=SEED)
    completion = oa.completions.create(model=MODEL, prompt=prompt, extra_headers=SEED)
    with oa.chat.completions.stream(model=MODEL, messages=user, extra_headers=SEED) as stream:
        streamed = stream.get_final_completion()
    return {
        "openai_chat": chat.choices[0].message.content,
        "openai_chat streamed": streamed.choices[0].message.content or "",
        "anthropic_messages": message.content[0].text,
        "openai_responses": response.output_text,
        "openai_completions": completion.choices[0].text,
        "ollama_chat": llama.chat(model=MODEL, messages=user).message.content or "",
        "ollama_generate": llama.generate(model=MODEL, prompt=prompt).response,
        "gemini": gemini.models.generate_content(model=MODEL, contents=prompt).text or "",
    }


def test_same_content_and_seed_give_the_same_text_in_every_format(
    sdks: dict[str, Any], admin: MockAdmin
) -> None:
    texts = answers(sdks, "Hello there")
    assert len(set(texts.values())) == 1, texts
    assert texts["openai_chat"]
    assert answers(sdks, "Hello again")["gemini"] != texts["gemini"]
    entries = admin.requests()
    formats = {e["format"] for e in entries}
    assert formats == {name.removesuffix(" streamed") for name in texts}
    assert {e["outcome"] for e in entries} == {"completed"}


def test_a_rule_answers_in_every_format(sdks: dict[str, Any], admin: MockAdmin) -> None:
    rule = admin.add_rule(match={"prompt": "weather"}, respond={"text": "Sunny all day."})
    texts = answers(sdks, "What is the weather?")
    assert set(texts.values()) == {"Sunny all day."}, texts
    assert {e["rule_id"] for e in admin.requests()} == {rule["id"]}


def test_every_format_is_routed_and_other_paths_are_not() -> None:
    for (method, path), fmt in FORMATS.items():
        assert route(method, path) is fmt
        assert route("GET", path) is None
    assert route("POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent") is not None
    assert route("POST", "/v1/audio/speech") is None


# -- a shutdown mid-stream ends each format with its own error event ----------------------------

STREAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "anthropic_messages": (
        "/v1/messages",
        {"model": MODEL, "max_tokens": 100, "stream": True,
         "messages": [{"role": "user", "content": "hi"}]},
    ),
    "openai_responses": ("/v1/responses", {"model": MODEL, "input": "hi", "stream": True}),
    "openai_completions": ("/v1/completions", {"model": MODEL, "prompt": "hi", "stream": True}),
    "ollama_chat": ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
    "ollama_generate": ("/api/generate", {"model": MODEL, "prompt": "hi"}),
    "gemini": (
        f"/v1beta/models/{MODEL}:streamGenerateContent",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
}  # fmt: skip


def _last_error(name: str, body: bytes) -> Any:
    """The last event of ``body`` as the vendor's client would read it."""
    if name.startswith("ollama"):
        return json.loads(body.splitlines()[-1])
    last = body.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n\n")[-1]
    data = [line[6:] for line in last.split(b"\n") if line.startswith(b"data: ")]
    if name in ("anthropic_messages", "openai_responses"):
        assert last.startswith(b"event: error\n")
    return json.loads(b"\n".join(data))


@pytest.mark.parametrize("name", list(STREAMS))
async def test_a_shutdown_ends_the_stream_with_the_format_error(name: str) -> None:
    path, body = STREAMS[name]
    app = MockApp()
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message})

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"x-mock-itl-ms", b"10000"), (b"x-mock-tokens", b"5")],
    }
    call = asyncio.ensure_future(app(scope, receive, send))
    await wait_for_async(lambda: len(sent) >= 2, what="the first token")
    assert await app.drain(5.0) == 1
    await asyncio.wait_for(call, 5.0)
    assert sent[-1]["more_body"] is False
    error = _last_error(name, b"".join(m.get("body", b"") for m in sent[1:]))
    message = {
        "anthropic_messages": lambda e: e["error"]["message"],
        "openai_responses": lambda e: e["message"],
        "openai_completions": lambda e: e["error"]["message"],
        "ollama_chat": lambda e: e["error"],
        "ollama_generate": lambda e: e["error"],
        "gemini": lambda e: e["error"]["message"],
    }[name](error)
    assert "shutting down" in message
    (entry,) = app.ledger.query()
    assert entry.outcome == "server_shutdown" and entry.format == name


def test_a_format_path_with_another_method_is_a_405_in_its_shape(mock_url: str) -> None:
    assert httpx.get(f"{mock_url}/api/chat").json() == {
        "error": "Method GET not allowed on /api/chat."
    }
    assert httpx.get(f"{mock_url}/v1/responses").json()["error"]["type"] == "invalid_request_error"


# -- a script's writes are its events, joined where they are due together ----------------------


@pytest.mark.parametrize("name", [n for n in FORMAT_BODIES if n != "openai_chat"])
@pytest.mark.parametrize(
    "control",
    [
        {"tokens": 300},
        {"tokens": 40, "itl_ms": 10},
        {"tokens": 40, "itl_ms": 10, "jitter_ms": 5},
        {"tokens": 40, "tokens_per_chunk": 3},
        {"tool": "get_weather"},
        {"tokens": 40, "fault": "no_done"},
    ],
    ids=["instant", "paced", "jitter", "chunks", "tool", "no_done"],
)
def test_writes_are_the_events_joined(name: str, control: dict[str, Any]) -> None:
    fmt = next(f for f in [*FORMATS.values(), GEMINI] if f.name == name)
    body = FORMAT_BODIES[name]
    request = fmt.parse(body, f"/v1beta/models/{MODEL}:streamGenerateContent")
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    plan = build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)
    events = list(fmt.stream(plan, body, 0).events())
    writes = list(fmt.stream(plan, body, 0).writes())
    assert b"".join(e[1] for e in writes) == b"".join(e[1] for e in events)
    assert sum(e[2] for e in writes) == sum(e[2] for e in events) == plan.completion_tokens
    assert [e[0] for e in writes] == sorted(e[0] for e in writes)
    if "itl_ms" not in control and "tokens_per_chunk" not in control:
        assert len(writes) < len(events) or plan.choices[0].tool_call is not None


def test_the_same_bytes_in_two_formats_are_two_conversations(mock_url: str) -> None:
    """The base-seed cache is keyed by format too: Ollama numbers its tool calls, so this body
    is another conversation on /api/chat than on /v1/chat/completions."""
    body = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Which city is warmer, today of all days?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "w", "arguments": {"city": "Oslo"}}}],
            },
            {"role": "user", "content": "Go on."},
        ],
        "stream": False,
    }
    ollama_text = httpx.post(f"{mock_url}/api/chat", json=body).json()["message"]["content"]
    chat = httpx.post(f"{mock_url}/v1/chat/completions", json=body).json()
    request = parse_chat_request(body)
    control = resolve(model=MODEL, default_profile="instant")
    expected = build_plan(request, control, messages=request.messages, server_seed=11, sequence=1)
    assert chat["choices"][0]["message"]["content"] == expected.choices[0].text != ollama_text


@pytest.mark.parametrize("name", [n for n in FORMAT_BODIES if n != "openai_chat"])
def test_a_stall_and_split_apply_in_every_format(name: str) -> None:
    fmt = next(f for f in [*FORMATS.values(), GEMINI] if f.name == name)
    body = FORMAT_BODIES[name]
    request = fmt.parse(body, f"/v1beta/models/{MODEL}:streamGenerateContent")
    headers = {"tokens": 6, "itl_ms": 10, "fault": "stall_after=2;seconds=3,split_chunk=4"}
    ctl = resolve(model=request.model, default_profile="instant", headers=headers)
    plan = build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)
    events = list(fmt.stream(plan, body, 0).writes())
    dues = [e[0] for e in events if e[2]]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(dues)]
    assert gaps == [0.01, 3.01, 0.01, 0.01, 0.01]
    assert [e[3] for e in events if e[2]] == [0, 0, 0, 0, 1, 0]  # token 4's event is split

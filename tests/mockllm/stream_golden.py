"""The golden streams: a fixed set of chat requests and the exact bytes the mock answers them with.

``tests/mockllm/data/stream_golden.json`` was recorded from the mock as it was before its
streaming path was rebuilt (lazy building, writes grouped); ``test_stream_bytes.py`` asserts
that the mock still produces exactly that, at two levels:

- **events** (pure, no I/O): every event of the answer's script in order, with its due time,
  its bytes, the tokens it carries and its fault action;
- **wire** (the ASGI app in memory): the status, the response headers, the body bytes as the
  client receives them (whatever the grouping into writes) and what the ledger recorded.

Recording again (``python -m tests.mockllm.stream_golden``) is only right when a change of the
bytes is intended; the diff of the JSON file then shows exactly which bytes changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mockllm.app import AbortConnection, MockApp, MockConfig
from mockllm.chat import build, prepare
from mockllm.generation import Script

GOLDEN = Path(__file__).with_name("data") / "stream_golden.json"
CREATED = 1_700_000_000
_CREATED = re.compile(rb'"created":(\d+)')

_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "units": {"enum": ["c", "f"]},
            },
        },
    },
}


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    # False: too slow to play in real time (events only)
    wire: bool = True


def _chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me about streams."}],
        "stream": True,
        **extra,
    }


CASES: tuple[Case, ...] = (
    Case("default", _chat()),
    Case("seed_server_7", _chat(), seed=7),
    Case("seed_request_5_max_tokens_7", _chat(seed=5, max_tokens=7)),
    Case("tokens_1", _chat(), {"X-Mock-Tokens": "1"}),
    Case("tokens_0", _chat(), {"X-Mock-Tokens": "0"}),
    Case("tokens_300", _chat(), {"X-Mock-Tokens": "300"}),
    Case("tokens_1000", _chat(), {"X-Mock-Tokens": "1000"}, seed=3),
    Case("n_3", _chat(n=3), {"X-Mock-Tokens": "20"}),
    Case("n_2_usage", _chat(n=2, stream_options={"include_usage": True})),
    Case("usage", _chat(stream_options={"include_usage": True}), {"X-Mock-Tokens": "10"}),
    Case("usage_false", _chat(stream_options={"include_usage": False}), {"X-Mock-Tokens": "4"}),
    Case("text", _chat(), {"X-Mock-Text": "Hi there. Caf\u00e9 au lait, 1234567 ways!"}),
    Case("text_empty", _chat(), {"X-Mock-Text": ""}),
    Case(
        "echo_unicode",
        _chat(messages=[{"role": "user", "content": "数据 流式 🙂 naïve\n\tcode"}]),
        {"X-Mock-Mode": "echo"},
    ),
    Case("model_profile_instant", _chat(model="mock-instant"), {"X-Mock-Tokens": "3"}),
    Case("tool_required", _chat(tools=[_WEATHER], tool_choice="required")),
    Case(
        "tool_named_n_2_usage",
        _chat(
            tools=[_WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            n=2,
            stream_options={"include_usage": True},
        ),
    ),
    Case(
        "tool_arguments_given",
        _chat(tools=[_WEATHER]),
        {"X-Mock-Tool": "get_weather", "X-Mock-Tool-Arguments": '{"city":"Zürich"}'},
    ),
    Case("chunk_3", _chat(), {"X-Mock-Tokens": "20", "X-Mock-Tokens-Per-Chunk": "3"}),
    Case("chunk_4_n_2", _chat(n=2), {"X-Mock-Tokens": "9", "X-Mock-Tokens-Per-Chunk": "4"}),
    Case("chunk_50_tokens_7", _chat(), {"X-Mock-Tokens": "7", "X-Mock-Tokens-Per-Chunk": "50"}),
    Case("chunk_5_tokens_300", _chat(), {"X-Mock-Tokens": "300", "X-Mock-Tokens-Per-Chunk": "5"}),
    Case("fault_abort_after_5", _chat(), {"X-Mock-Tokens": "10", "X-Mock-Fault": "abort_after=5"}),
    Case("fault_abort_after_0", _chat(), {"X-Mock-Tokens": "10", "X-Mock-Fault": "abort_after=0"}),
    Case(
        "fault_abort_after_200",
        _chat(),
        {"X-Mock-Tokens": "300", "X-Mock-Fault": "abort_after=200"},
    ),
    Case("fault_abort_after_past_end", _chat(), {"X-Mock-Fault": "abort_after=99"}),
    Case("fault_abort_after_at_end", _chat(), {"X-Mock-Fault": "abort_after=32"}),
    Case(
        "fault_truncate_after_5",
        _chat(),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "truncate_after=5"},
    ),
    Case(
        "fault_truncate_after_5_usage",
        _chat(stream_options={"include_usage": True}),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "truncate_after=5"},
    ),
    Case(
        "fault_malformed_after_4",
        _chat(),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "malformed_after=4"},
    ),
    Case(
        "fault_malformed_after_4_chunk_3",
        _chat(),
        {"X-Mock-Fault": "malformed_after=4", "X-Mock-Tokens-Per-Chunk": "3"},
    ),
    Case("fault_error_after_3", _chat(), {"X-Mock-Tokens": "10", "X-Mock-Fault": "error_after=3"}),
    Case(
        "fault_error_after_3_n_2",
        _chat(n=2),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "error_after=3"},
    ),
    Case("fault_no_done", _chat(), {"X-Mock-Tokens": "10", "X-Mock-Fault": "no_done"}),
    Case(
        "fault_no_done_usage",
        _chat(stream_options={"include_usage": True}),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "no_done"},
    ),
    Case("fault_split_chunk_2", _chat(), {"X-Mock-Tokens": "6", "X-Mock-Fault": "split_chunk=2"}),
    Case(
        "fault_split_chunk_all",
        _chat(),
        {"X-Mock-Tokens": "6", "X-Mock-Fault": "split_chunk;pause_ms=1"},
    ),
    Case(
        "fault_split_chunk_4_chunk_3",
        _chat(),
        {"X-Mock-Tokens": "9", "X-Mock-Tokens-Per-Chunk": "3", "X-Mock-Fault": "split_chunk=4"},
    ),
    Case(
        "fault_split_and_abort",
        _chat(),
        {"X-Mock-Tokens": "9", "X-Mock-Fault": "split_chunk=1;pause_ms=1,abort_after=4"},
    ),
    Case(
        "fault_abort_and_no_done",
        _chat(),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "abort_after=10,no_done"},
    ),
    Case(
        "fault_error_before_abort",
        _chat(),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "abort_after=6,error_after=2"},
    ),
    Case(
        "fault_stall", _chat(), {"X-Mock-Tokens": "6", "X-Mock-Fault": "stall_after=3;seconds=0.02"}
    ),
    Case(
        "fault_status_429",
        _chat(),
        {"X-Mock-Tokens": "3", "X-Mock-Fault": "status=429;retry_after=2"},
    ),
    Case("fault_status_500", _chat(), {"X-Mock-Tokens": "3", "X-Mock-Fault": "status=500"}),
    Case("fault_slow_headers", _chat(), {"X-Mock-Tokens": "3", "X-Mock-Fault": "slow_headers=5"}),
    Case(
        "paced_small", _chat(), {"X-Mock-Tokens": "8", "X-Mock-Ttft-Ms": "3", "X-Mock-Itl-Ms": "2"}
    ),
    Case(
        "paced_jitter_n_2_chunk_2",
        _chat(n=2),
        {
            "X-Mock-Tokens": "9",
            "X-Mock-Ttft-Ms": "2",
            "X-Mock-Itl-Ms": "1",
            "X-Mock-Jitter-Ms": "1",
            "X-Mock-Tokens-Per-Chunk": "2",
        },
    ),
    Case("profile_fast", _chat(model="mock-fast"), {"X-Mock-Tokens": "10"}),
    Case("profile_fast_300", _chat(model="mock-fast"), {"X-Mock-Tokens": "300"}, wire=False),
    Case("profile_realistic", _chat(model="mock-realistic"), wire=False),
    Case(
        "profile_realistic_n_2_usage",
        _chat(model="mock-realistic", n=2, stream_options={"include_usage": True}),
        {"X-Mock-Tokens": "200"},
        wire=False,
    ),
    Case(
        "paced_stall_split",
        _chat(),
        {
            "X-Mock-Tokens": "12",
            "X-Mock-Itl-Ms": "7",
            "X-Mock-Jitter-Ms": "9",
            "X-Mock-Fault": "stall_after=5;seconds=3,split_chunk=6",
        },
        wire=False,
    ),
    Case("body", _chat(stream=False)),
    Case("body_n_2_tools", _chat(stream=False, n=2, tools=[_WEATHER], tool_choice="required")),
    Case(
        "body_abort", _chat(stream=False), {"X-Mock-Tokens": "10", "X-Mock-Fault": "abort_after=3"}
    ),
    Case(
        "body_malformed",
        _chat(stream=False),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "malformed_after=3"},
    ),
    Case(
        "body_error_after",
        _chat(stream=False),
        {"X-Mock-Tokens": "10", "X-Mock-Fault": "error_after=3"},
    ),
    Case("body_max_tokens", _chat(stream=False, max_tokens=5)),
)


def scope_of(case: Case, raw: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in case.headers.items()]
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": headers,
    }


def _text(data: bytes) -> str:
    # surrogateescape: a cut event may end inside a UTF-8 sequence; JSON keeps the escape.
    return data.decode("utf-8", "surrogateescape")


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()[:16]}:{len(data)}"


# A case whose events hold more bytes than this keeps a digest of each event instead of its
# text (the file stays small enough to review; the small cases show every byte).
_FULL_TEXT_MAX = 10_000


async def record_events(case: Case) -> dict[str, Any]:
    """The case's script, event by event, as the pure layer builds it (created fixed)."""
    app = MockApp(MockConfig(seed=case.seed))
    raw = json.dumps(case.body).encode()
    prepared = await prepare(app, scope_of(case, raw), raw, commit=True)
    plan, script = await build(case.seed, prepared, CREATED)
    assert script is not None
    if isinstance(script, Script):
        events = list(script.events())
        split_pause, shutdown = script.split_pause, script.shutdown
    else:
        events, split_pause, shutdown = [script.event], 0.0, b""
    full = sum(len(e[1]) for e in events) <= _FULL_TEXT_MAX
    return {
        "events": [
            [due, _text(data) if full else digest(data), ntok, int(action)]
            for due, data, ntok, action in events
        ],
        "outcome": script.outcome,
        "split_pause": split_pause,
        "tokens": list(script.tokens),
        "shutdown": _text(shutdown),
        "finish_reason": plan.choices[0].finish_reason if plan.choices else None,
        "usage": plan.usage,
    }


async def record_wire(case: Case) -> dict[str, Any]:
    """The case through the ASGI app in memory: status, headers, body, ledger entry."""
    app = MockApp(MockConfig(seed=case.seed))
    raw = json.dumps(case.body).encode()
    inbox = [{"type": "http.request", "body": raw, "more_body": False}]
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await left.wait()  # the client leaves once the response is over
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message})

    aborted = False
    try:
        await asyncio.wait_for(app(scope_of(case, raw), receive, send), 30)
    except AbortConnection:
        aborted = True
    finally:
        left.set()
        await asyncio.sleep(0)  # the disconnect watch sees the client leave
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    created = set(_CREATED.findall(body))
    assert len(created) <= 1, f"{case.name}: chunks disagree on created: {created}"
    body = _CREATED.sub(b'"created":0', body)
    (entry,) = app.ledger.query()
    ledger = entry.to_json()
    for key in ("started_at", "first_token_at", "ended_at", "headers", "body"):
        ledger.pop(key)
    # Recorded before the ledger had it, and no golden request misses a rule (it is None):
    # the near miss has its own tests (test_rules.py, test_pytest_plugin.py).
    assert ledger.pop("near_miss", None) is None
    # Recorded before the ledger had formats: every golden case is a chat completion.
    assert ledger.pop("format") == "openai_chat"
    return {
        "status": start["status"],
        "headers": [[_text(k), _text(v)] for k, v in start["headers"]],
        # The body's text is in the events (a stream's body is their bytes end to end).
        "body": digest(body),
        "ended": "aborted" if aborted else bool(sent and sent[-1].get("more_body") is False),
        "ledger": ledger,
    }


async def record(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"events": await record_events(case)}
    if case.wire:
        out["wire"] = await record_wire(case)
    return out


async def record_all() -> dict[str, Any]:
    return {case.name: await record(case) for case in CASES}


def main() -> int:
    GOLDEN.parent.mkdir(exist_ok=True)
    recorded = asyncio.run(record_all())
    # One case per line: a change shows as the cases it touches.
    lines = [
        f"{json.dumps(name)}:{json.dumps(value, ensure_ascii=True)}"
        for name, value in recorded.items()
    ]
    GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(recorded)} cases to {GOLDEN}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

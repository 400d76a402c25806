"""The encoder of every wire format, measured alone: tokens per CPU second (no server, no socket).

Each format answers the same request (one user message, ``N`` tokens of the same seed, the
``instant`` profile) and the bench plays its script the way ``respond.write_stream`` does
(``Script.writes()``, every item's bytes), or builds its non-streamed body, a few rounds after
a warm-up (the seed's tokens are made once and shared, as under load). A format whose encoder
costs more per token than the others shows here before it shows in a load test.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from mockllm.control import resolve
from mockllm.formats.base import Format
from mockllm.formats.chat_completions import CHAT
from mockllm.generation import Plan, body_script, build_plan, stream_script
from mockllm.routes import FORMATS, GEMINI

__all__ = ["FORMAT_BODIES", "formats_table", "measure_formats"]

_PROMPT = "Benchmark the encoder."
_MESSAGES = [{"role": "user", "content": _PROMPT}]

#: format name -> a request body of that format (streamed; the body run sets it off)
FORMAT_BODIES: dict[str, dict[str, Any]] = {
    "openai_chat": {"model": "mock-instant", "messages": _MESSAGES, "stream": True},
    "anthropic_messages": {
        "model": "mock-instant",
        "max_tokens": 1_000_000,
        "messages": _MESSAGES,
        "stream": True,
    },
    "openai_responses": {"model": "mock-instant", "input": _PROMPT, "stream": True},
    "openai_completions": {"model": "mock-instant", "prompt": _PROMPT, "stream": True},
    "ollama_chat": {"model": "mock-instant", "messages": _MESSAGES, "stream": True},
    "ollama_generate": {"model": "mock-instant", "prompt": _PROMPT, "stream": True},
    "gemini": {"contents": [{"role": "user", "parts": [{"text": _PROMPT}]}]},
}
_GEMINI_PATH = "/v1beta/models/mock-instant:streamGenerateContent"


def _formats() -> dict[str, Format]:
    found = {fmt.name: fmt for fmt in FORMATS.values()}
    found[GEMINI.name] = GEMINI
    return {name: found[name] for name in FORMAT_BODIES}


def _plan(fmt: Format, body: dict[str, Any], tokens: int) -> Plan:
    request = fmt.parse(body, _GEMINI_PATH)
    control = resolve(model=request.model, default_profile="instant", headers={"tokens": tokens})
    return build_plan(request, control, messages=request.messages, server_seed=0, sequence=1)


def _stream_bytes(fmt: Format, body: dict[str, Any], plan: Plan) -> int:
    if fmt is CHAT:
        script: Any = stream_script(plan, created=0, include_usage=False)
    else:
        script = fmt.stream(plan, body, 0)
    return sum(len(item[1]) for item in script.writes())


def _body_bytes(fmt: Format, body: dict[str, Any], plan: Plan) -> int:
    if fmt is CHAT:
        return len(body_script(plan, created=0).event[1])
    return len(fmt.body(plan, body, 0, 0).event[1])


def _cpu(work: Callable[[], int]) -> tuple[float, int]:
    start = time.process_time()
    size = work()
    return time.process_time() - start, size


def measure_formats(tokens: int = 100_000, rounds: int = 5) -> dict[str, dict[str, Any]]:
    """Per format: stream and body tokens per CPU second (median of ``rounds``), bytes/token."""
    out: dict[str, dict[str, Any]] = {}
    for name, fmt in _formats().items():
        body = FORMAT_BODIES[name]
        plan = _plan(fmt, body, tokens)
        _stream_bytes(fmt, body, plan)  # warm-up: the seed's tokens are made here
        stream_s: list[float] = []
        body_s: list[float] = []
        size = 0
        for _ in range(rounds):
            fresh = _plan(fmt, body, tokens)
            seconds, size = _cpu(functools.partial(_stream_bytes, fmt, body, fresh))
            stream_s.append(seconds)
            seconds, _ = _cpu(functools.partial(_body_bytes, fmt, body, fresh))
            body_s.append(seconds)
        out[name] = {
            "stream_tokens_per_cpu_s": round(tokens / max(statistics.median(stream_s), 1e-9)),
            "body_tokens_per_cpu_s": round(tokens / max(statistics.median(body_s), 1e-9)),
            "stream_bytes_per_token": round(size / tokens, 1),
        }
    out["openai_embeddings_vectors"] = measure_embeddings(rounds=rounds)
    return out


def measure_embeddings(inputs: int = 200, rounds: int = 3) -> dict[str, Any]:
    """Embeddings: vectors of the default size per CPU second, as base64 (the SDK's default)."""
    fmt = next(f for f in FORMATS.values() if f.name == "openai_embeddings")
    body = {
        "model": "mock-instant",
        "input": [f"{_PROMPT} {i}" for i in range(inputs)],
        "encoding_format": "base64",
    }
    plan = _plan(fmt, body, 1)
    seconds = []
    for _ in range(rounds):
        spent, _ = _cpu(functools.partial(_body_bytes, fmt, body, plan))
        seconds.append(spent)
    return {"vectors_per_cpu_s": round(inputs / max(statistics.median(seconds), 1e-9))}


def formats_table(results: dict[str, dict[str, Any]], tokens: int) -> str:
    lines = [
        f"formats: encoder alone, {tokens:,} tokens instant, median CPU (no server)",
        f"  {'format':<20} {'stream tok/CPU s':>17} {'body tok/CPU s':>15} {'bytes/token':>12}",
    ]
    for name, row in results.items():
        if name not in FORMAT_BODIES:
            continue
        lines.append(
            f"  {name:<20} {row['stream_tokens_per_cpu_s']:>17,} "
            f"{row['body_tokens_per_cpu_s']:>15,} {row['stream_bytes_per_token']:>12}"
        )
    embeddings = results.get("openai_embeddings_vectors")
    if embeddings is not None:
        lines.append(
            f"  {'openai_embeddings':<20} {embeddings['vectors_per_cpu_s']:>17,} vectors "
            "(1,536 floats, base64) per CPU s"
        )
    return "\n".join(lines)

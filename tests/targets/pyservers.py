"""Launcher of the small FastAPI chat backends in this folder, written as people publish them.

Each server is one script (``python <file> --port 0 --provider-url <base>/v1``) that binds its
socket, prints ``<name> listening on http://127.0.0.1:PORT`` and serves with uvicorn. They
hard-code their model, so the provider must serve it (``python -m mockllm --model gpt-3.5-turbo
--model gpt-4o --model gpt-4o-mini``); none forwards ``X-Mock-*`` headers, so drive the mock
with rules matching the prompt. :data:`SERVERS` says what each speaks and which flaws it has
on purpose; :func:`start` runs one as a real process and always stops it.

    async with start("sse_get", mock_url + "/v1", tmp_path) as url:
        ...  # GET {url}/stream?prompt=hi
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from scenarios.stack.procs import start_process

__all__ = ["SERVERS", "PyServer", "start"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PyServer:
    """One server script: how to talk to it, and what it gets wrong on purpose."""

    script: str  # file name in this folder
    transport: str  # "ws-text", "sse-raw" or "ai-data-stream"
    method: str  # "WS", "GET" or "POST"
    path: str
    request: str  # how the prompt is sent
    model: str  # the model it hard-codes (the provider must serve it)
    description: str
    flaws: tuple[str, ...]


SERVERS: dict[str, PyServer] = {
    "ws_text": PyServer(
        script="ws_text_fastapi.py",
        transport="ws-text",
        method="WS",
        path="/chat",
        request="the prompt as a text frame; several prompts per connection (history kept)",
        model="gpt-3.5-turbo",
        description="WebSocket /chat: plain-text frame per delta, no end frame (silence), "
        "no error frame (an exception drops the connection: 1006); adds its own system prompt",
        flaws=(
            "whitespace-only deltas are dropped: '\\n' and '\\n\\n' never reach the client",
            "a client that leaves mid-answer is ignored: the provider stream is read to its "
            "end (ledger: completed, every token sent)",
            "the end of an answer is silence: a client cannot tell done from stalled",
        ),
    ),
    "sse_get": PyServer(
        script="sse_get_fastapi.py",
        transport="sse-raw",
        method="GET",
        path="/stream",
        request="query parameter prompt=...",
        model="gpt-4o",
        description="SSE: 'data: <raw delta>\\n\\n' per delta, in-band 'data: [DONE]\\n\\n'; "
        "errors cut the body after the 200 headers",
        flaws=(
            "a delta equal to '[DONE]' ends the stream for the client",
            "a delta containing '\\n' breaks the SSE framing: newlines are lost",
            "an error (before or during the answer) is a cut body with status 200",
        ),
    ),
    "sse_sync": PyServer(
        script="sse_sync_fastapi.py",
        transport="sse-raw",
        method="GET",
        path="/api/stream",
        request="query parameter q=...",
        model="gpt-3.5-turbo",
        description="SSE like sse_get, but the synchronous openai.OpenAI client iterated "
        "inside an async generator; adds its own system prompt",
        flaws=(
            "the event loop is blocked for a whole answer: a second request gets its first "
            "byte only after the first answer ended (its provider call even starts after it)",
            "a client that leaves is not noticed: the provider call always runs to its end",
            "a delta equal to '[DONE]' ends the stream; newlines are lost",
            "an error is a cut body with status 200",
        ),
    ),
    "ai_data_stream": PyServer(
        script="ai_data_stream_fastapi.py",
        transport="ai-data-stream",
        method="POST",
        path="/api/chat",
        request='JSON {"id": ..., "messages": [{"role": "user", "content": "..."}]} (useChat v4)',
        model="gpt-4o-mini",
        description="Vercel AI SDK data stream v1 over chunked HTTP ('x-vercel-ai-data-stream: "
        "v1'): '0:\"delta\"' lines, then 'e:{...}' and 'd:{...}'; an error before the answer "
        "is '3:\"message\"' with status 200",
        flaws=(
            "a provider failure during the answer cuts the body: no '3:' error part and no "
            "'e:'/'d:' finish (the client sees a network error)",
            "finishReason is always 'stop' (a length cut looks like a normal end)",
            "the '3:' message is the provider's raw error text, leaked to the browser",
        ),
    ),
    "json_ws": PyServer(
        script="json_ws_fastapi.py",
        transport="ws-json",
        method="WS",
        path="/api/ws?user=...",
        request='{"prompt": "..."}; {"event": "stop"} cancels',
        model="gpt-4o-mini",
        description="WebSocket: {'event': 'delta', 'text'} per delta, {'event': 'done'} at the "
        "end, {'event': 'error'} for errors, {'event': 'stopped'} after a stop; the README's "
        "own-shape example and the control case",
        flaws=(),
    ),
}


@contextlib.asynccontextmanager
async def start(name: str, provider_url: str, log_dir: Path) -> AsyncIterator[str]:
    """Run server ``name`` against ``provider_url`` (ending in ``/v1``); yield its base URL.

    Its output goes to ``log_dir/<name>.log``; it is stopped (SIGTERM, then SIGKILL) on exit.
    """
    server = SERVERS[name]
    proc = await start_process(
        name,
        [
            sys.executable,
            str(HERE / server.script),
            "--port",
            "0",
            "--provider-url",
            provider_url.rstrip("/"),
        ],
        log_dir=log_dir,
    )
    try:
        assert proc.url is not None
        yield proc.url.rstrip("/")
    finally:
        await proc.stop()

"""The servers the mock is measured against, and how each is started.

- **baseline**: a raw-asyncio HTTP/1.1 server that writes the same pre-encoded chunks on the
  same start-anchored schedule with one ``write`` per chunk, and does nothing else (no
  parsing, no ledger): the floor of a Python server's cost per chunk.
- **aimock**: CopilotKit's ``@copilotkit/aimock`` (Node), a mock LLM server that writes a
  stream's chunks together. It is started when ``node`` and the npm package are present in
  the cache directory (``npm install --prefix DIR @copilotkit/aimock``); the bench says so
  when they are not. It answers from fixtures: :func:`aimock_fixtures` writes one per
  workload, matched by the user message :func:`prompt` gives.
- **starlette** (on request): the same stream through Starlette's ``StreamingResponse``.

Every server prints ``... listening on http://HOST:PORT`` (``mockllm.childproc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import psutil

from mockllm.content import lorem_tokens
from mockllm.formats.openai_chat import ChunkEncoder

__all__ = [
    "AIMOCK_PACKAGE",
    "DEFAULT_AIMOCK_DIR",
    "aimock_command",
    "aimock_fixtures",
    "main_serve",
    "pin",
    "prompt",
    "serve_baseline",
    "serve_starlette",
]

AIMOCK_PACKAGE = "@copilotkit/aimock"
#: Where the bench looks for aimock unless told otherwise (outside any checkout).
DEFAULT_AIMOCK_DIR = Path.home() / ".cache" / "streamharness" / "aimock"
# aimock splits a fixture's content into chunks of this many characters: one chunk per token.
_AIMOCK_CHUNK = "abcde"


def prompt(tokens: int, itl_ms: float) -> str:
    """The user message of a workload's requests (aimock picks its fixture by it)."""
    return f"bench tokens={tokens} itl_ms={itl_ms:g};"


# -- the baseline ------------------------------------------------------------------------------


def _events(enc: ChunkEncoder, count: int) -> list[bytes]:
    """The baselines' answer: ``count`` content chunks, the role on the first."""
    events = [enc.content(0, token) for token in lorem_tokens(count, count)]
    if events:
        events[0] = enc.role(0) + events[0]
    return events


async def _paced(events: list[bytes], itl: float) -> AsyncIterator[bytes]:
    """``events`` on the mock's schedule: event ``i`` at ``start + i * itl`` (0 = at once)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, event in enumerate(events):
        if itl:
            delay = start + i * itl - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield event


async def _baseline_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive loop writing chunked SSE with no framework at all."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
            count = int(headers.get(b"x-mock-tokens", b"32"))
            itl = float(headers.get(b"x-mock-itl-ms", b"0")) / 1000.0
            enc = ChunkEncoder("chatcmpl-baseline", int(time.time()), "gpt-4o-mini")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            async for event in _paced(_events(enc, count), itl):
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
            done = enc.finish(0, "stop") + enc.done
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
            if headers.get(b"connection", b"").lower() == b"close":
                return
    except ConnectionError:
        return
    finally:
        writer.close()


async def serve_baseline(port: int) -> None:
    server = await asyncio.start_server(_baseline_connection, "127.0.0.1", port, backlog=4096)
    print(
        f"baseline listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True
    )
    async with server:
        await server.serve_forever()


# -- the same stream through Starlette's StreamingResponse (for comparison only) ----------------


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chat(request: Request) -> StreamingResponse:
        await request.body()
        count = int(request.headers.get("x-mock-tokens", "32"))
        itl = float(request.headers.get("x-mock-itl-ms", "0")) / 1000.0
        enc = ChunkEncoder("chatcmpl-starlette", int(time.time()), "gpt-4o-mini")

        async def body() -> Any:
            async for event in _paced(_events(enc, count), itl):
                yield event
            yield enc.finish(0, "stop") + enc.done

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def serve_starlette(port: int, loop: str) -> None:
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    print(f"starlette listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        _starlette_app(),
        loop=loop,
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- aimock --------------------------------------------------------------------------------------


def aimock_command(directory: Path, fixtures: Path) -> tuple[list[str] | None, str]:
    """The command that starts aimock on a free port with ``fixtures``, or None and why not."""
    node = shutil.which("node")
    if node is None:
        return None, "node is not on PATH"
    cli = directory / "node_modules" / AIMOCK_PACKAGE / "dist" / "cli.js"
    if not cli.is_file():
        return None, (
            f"{AIMOCK_PACKAGE} is not installed in {directory} "
            f"(npm install --prefix {directory} {AIMOCK_PACKAGE})"
        )
    version = "?"
    with_version = cli.parent.parent / "package.json"
    if with_version.is_file():
        version = json.loads(with_version.read_text()).get("version", "?")
    # Its "listening on" line is an info message; it logs nothing per request at that level.
    command = [node, str(cli), "--port", "0", "--fixtures", str(fixtures), "--log-level", "info"]
    return command, f"{AIMOCK_PACKAGE} {version}, node {_node_version(node)}"


def _node_version(node: str) -> str:
    import subprocess

    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip().lstrip("v") or "?"


def aimock_fixtures(workloads: Iterable[tuple[int, float]]) -> dict[str, Any]:
    """One fixture per (tokens, itl_ms): ``tokens`` content chunks, the first at once after
    the role chunk and one every ``itl_ms`` after it (aimock's streaming profile)."""
    fixtures = []
    for tokens, itl_ms in sorted(set(workloads)):
        fixture: dict[str, Any] = {
            "match": {"userMessage": prompt(tokens, itl_ms)},
            "response": {"content": _AIMOCK_CHUNK * tokens},
            "chunkSize": len(_AIMOCK_CHUNK),
        }
        if itl_ms:
            fixture["streamingProfile"] = {"ttft": 0, "tps": 1000.0 / itl_ms}
        fixtures.append(fixture)
    return {"fixtures": fixtures}


# -- processes -----------------------------------------------------------------------------------


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` (a runtime's helper threads too) to ``cpu``."""
    try:
        threads = [t.id for t in psutil.Process(pid).threads()]
    except psutil.Error:
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, {cpu})


def main_serve(kind: str, port: int, loop: str) -> None:
    """Run one of the comparison servers in this process (the bench's hidden options)."""
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if kind == "baseline":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_baseline(port))
    elif kind == "starlette":
        serve_starlette(port, loop)
    else:
        sys.exit(f"unknown server {kind}")

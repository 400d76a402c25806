"""The naive server: the common tutorial's architecture, written plainly, flaws included.

It exists so users can see what goes wrong and so the harness can prove it catches it. Do
not copy it. The flaws, each on purpose and each caught by a scenario:

1. The end of a stream is an in-band token, ``{"type": "token", "content": "[END]"}``: a
   model that writes "[END]" ends the stream early, and a client cannot tell "finished"
   from "stopped".
2. A new message on a connection cancels the stream that is running on it.
3. The client id in the path is trusted: a second socket with the same id takes over the
   first one's tokens.
4. No heartbeat: a proxy's idle timeout cuts a stream whose first token is slow.
5. A resend after a reconnect starts a second generation (no idempotency key), and the old
   generation keeps writing to whichever socket now has the client id.
6. Upstream errors are printed and the socket just stops: no error message, no end.
7. No limits: message size, streams, rate, slow consumers (unbounded buffering).

Run: ``python -m reference_server.naive --port 0 --upstream http://127.0.0.1:PORT/v1``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from mockllm.cliargs import CommandParser
from mockllm.uvserver import PromptServer

UPSTREAM = "http://127.0.0.1:8000/v1"
MODEL = "gpt-4o-mini"

app = FastAPI()
connections: dict[str, WebSocket] = {}  # client id -> socket (flaw 3: last one wins)


async def send(client_id: str, message: dict[str, Any]) -> None:
    # Looked up by id at every send, like the tutorial's ConnectionManager.send_message.
    await connections[client_id].send_json(message)


async def generate(client_id: str, request: dict[str, Any]) -> None:
    body = {
        "model": request.get("model") or MODEL,
        "messages": request["messages"],
        "stream": True,
    }
    try:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("POST", f"{UPSTREAM}/chat/completions", json=body) as response,
        ):
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        await send(client_id, {"type": "token", "content": content})
        await send(client_id, {"type": "token", "content": "[END]"})  # flaw 1
    except Exception as exc:  # flaw 6: printed, and the client waits forever
        print(f"error streaming for {client_id}: {exc!r}", flush=True)


@app.websocket("/ws/chat/{client_id}")
async def chat(websocket: WebSocket, client_id: str) -> None:
    await websocket.accept()
    connections[client_id] = websocket
    task: asyncio.Task[None] | None = None
    try:
        while True:
            request = await websocket.receive_json()
            if task is not None:
                task.cancel()  # flaw 2
            task = asyncio.create_task(generate(client_id, request))
    except WebSocketDisconnect:
        # The running generation is left alone (flaw 5): it goes on writing to whoever
        # holds this client id next, or fails and prints.
        if connections.get(client_id) is websocket:
            del connections[client_id]


class Server(PromptServer):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once stopped (exit status -15): a stop asked for
        # with SIGTERM or Ctrl-C is a clean exit.
        self._captured_signals.clear()


def main(argv: Sequence[str] | None = None) -> int:
    global UPSTREAM, MODEL
    parser = CommandParser(prog="python -m reference_server.naive")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--upstream", default=UPSTREAM, help="OpenAI-compatible base URL")
    parser.add_argument("--model", default=MODEL, help="model when the client sends none")
    args = parser.parse_args(argv)
    UPSTREAM, MODEL = args.upstream.rstrip("/"), args.model
    # Bind first so port 0 can be reported before serving; uvicorn takes the socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    # uvicorn pings every 20 s by default; the tutorial never relies on it and a proxy with
    # a shorter idle timeout cuts anyway, so switch it off to make flaw 4 deterministic.
    config = uvicorn.Config(
        app, log_level="warning", ws_ping_interval=None, timeout_graceful_shutdown=2
    )
    server = Server(config)
    print(f"naive listening on http://{args.host}:{port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

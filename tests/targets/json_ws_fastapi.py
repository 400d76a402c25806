"""A JSON-over-WebSocket chat backend in its own shape, written with care.

``/api/ws?user=...``: the client sends ``{"prompt": "..."}``; the server answers
``{"event": "delta", "text": ...}`` per delta, then ``{"event": "done", "reason": ...}``, or
``{"event": "error", "code": ..., "detail": ...}``. ``{"event": "stop"}`` cancels the running
answer (``{"event": "stopped"}``) and its provider request; a client that leaves cancels it too.
It is the shape of the profile file in the README's "Test your own server", and the control
case: a server of an unknown shape that the harness should find little wrong with.

Run: ``python json_ws_fastapi.py --port 0 --provider-url http://127.0.0.1:PORT/v1``.
"""

import argparse
import asyncio
import contextlib
import socket

import openai
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from openai import AsyncOpenAI

app = FastAPI()
client: AsyncOpenAI  # created in main() from --provider-url


async def answer(ws: WebSocket, prompt: str) -> None:
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )
        reason = "stop"
        async with stream:
            async for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    await ws.send_json({"event": "delta", "text": choice.delta.content})
                reason = choice.finish_reason or reason
        await ws.send_json({"event": "done", "reason": reason})
    except openai.APIError as exc:
        await ws.send_json({"event": "error", "code": "provider_error", "detail": str(exc)})


@app.websocket("/api/ws")
async def chat(ws: WebSocket, user: str) -> None:
    await ws.accept()
    running: asyncio.Task[None] | None = None
    try:
        while True:
            message = await ws.receive_json()
            if message.get("event") == "stop":
                if running is not None and not running.done():
                    running.cancel()
                    await ws.send_json({"event": "stopped"})
                continue
            if running is not None and not running.done():
                await ws.send_json({"event": "error", "code": "busy", "detail": "one at a time"})
                continue
            running = asyncio.create_task(answer(ws, message["prompt"]))
    except WebSocketDisconnect:
        pass
    finally:
        if running is not None:
            running.cancel()  # the provider request stops with it
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running


def main() -> None:
    global client
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--provider-url", default="https://api.openai.com/v1")
    args = parser.parse_args()
    client = AsyncOpenAI(base_url=args.provider_url, api_key="sk-test", max_retries=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"json_ws_fastapi listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""Chat over a WebSocket with plain-text frames, the way FastAPI + OpenAI blog posts write it.

Protocol: connect to ``/chat``, send the prompt as a text frame, get each delta as a text
frame. There is no end frame: when the answer is done the server waits for the next prompt.
Errors are not reported: an exception drops the connection (uvicorn's default backend
sends no close frame, so the client sees 1006).

Flaws, on purpose (the harness must find them):

- whitespace-only deltas are skipped, so ``"\\n"`` and ``"\\n\\n"`` never reach the client;
- when the client leaves mid-answer the provider stream is still read to its end (send
  errors are swallowed so the answer can be kept in the history), a provider call nobody
  is waiting for. (Starlette then refuses the next ``receive_text()`` with an error that
  ``except WebSocketDisconnect`` does not catch: uvicorn logs "Exception in ASGI application".)

Run: ``python ws_text_fastapi.py --port 0 --provider-url http://127.0.0.1:PORT/v1``.
"""

import argparse
import contextlib
import socket

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from openai import AsyncOpenAI

SYSTEM_PROMPT = "You are a helpful assistant. Keep your answers short."

app = FastAPI()
client: AsyncOpenAI  # created in main() from --provider-url


@app.websocket("/chat")
async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    try:
        while True:
            prompt = await websocket.receive_text()
            messages.append({"role": "user", "content": prompt})
            stream = await client.chat.completions.create(
                model="gpt-3.5-turbo", messages=messages, stream=True
            )
            answer = ""
            async for chunk in stream:
                token = chunk.choices[0].delta.content or ""
                answer += token
                if not token.strip():  # skip empty chunks (flaw: also drops "\n" tokens)
                    continue
                # Flaw, on purpose: if the client is gone we keep reading the stream anyway,
                # so that the whole answer ends up in the history.
                with contextlib.suppress(Exception):
                    await websocket.send_text(token)
            messages.append({"role": "assistant", "content": answer})
    except WebSocketDisconnect:
        print("client disconnected", flush=True)


def main() -> None:
    global client
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--provider-url", default="https://api.openai.com/v1")
    args = parser.parse_args()
    client = AsyncOpenAI(base_url=args.provider_url, api_key="sk-test")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"ws_text_fastapi listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()

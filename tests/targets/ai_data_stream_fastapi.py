"""``POST /api/chat`` speaking the Vercel AI SDK data stream protocol (v1, AI SDK 4).

Written like the "Next.js + FastAPI" AI SDK templates: the body is what ``useChat`` sends,
``{"id": "...", "messages": [{"role": "user", "content": "..."}]}``; the answer is chunked
plain text with the header ``x-vercel-ai-data-stream: v1``, one part per line::

    0:"<delta as a JSON string>"
    e:{"finishReason":"stop","usage":{"promptTokens":N,"completionTokens":M},"isContinued":false}
    d:{"finishReason":"stop","usage":{"promptTokens":N,"completionTokens":M}}

A provider error before the answer starts (status, connection refused) is a
``3:"<message>"`` line, with HTTP status 200 like the templates.

The flaw, on purpose and as in the templates: only the ``create()`` call is guarded. A provider
failure *during* the answer (dropped connection, error event, malformed chunk) raises out of
the generator: the chunked body is cut with no ``3:`` error part and no ``e:``/``d:`` finish,
so ``useChat`` gets a network error instead of the message. Also, ``finishReason`` is always
``"stop"`` (a ``length`` cut is reported as a normal end).

Run: ``python ai_data_stream_fastapi.py --port 0 --provider-url http://127.0.0.1:PORT/v1``.
"""

import argparse
import json
import socket

import openai
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

app = FastAPI()
client: AsyncOpenAI  # created in main() from --provider-url


class ClientMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    messages: list[ClientMessage]


async def stream_text(messages: list[dict[str, str]]):
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    except openai.APIError as e:
        yield f"3:{json.dumps(str(e))}\n"
        return

    # Flaw, on purpose: nothing below is guarded (see the module docstring).
    usage = {"promptTokens": 0, "completionTokens": 0}
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                yield f"0:{json.dumps(choice.delta.content)}\n"
        if chunk.usage:
            usage = {
                "promptTokens": chunk.usage.prompt_tokens,
                "completionTokens": chunk.usage.completion_tokens,
            }
    finish = {"finishReason": "stop", "usage": usage}
    yield f"e:{json.dumps({**finish, 'isContinued': False}, separators=(',', ':'))}\n"
    yield f"d:{json.dumps(finish, separators=(',', ':'))}\n"


@app.post("/api/chat")
async def handle_chat_data(request: ChatRequest) -> StreamingResponse:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    response = StreamingResponse(stream_text(messages))
    response.headers["x-vercel-ai-data-stream"] = "v1"
    return response


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
    print(f"ai_data_stream_fastapi listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()

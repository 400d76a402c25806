"""Server-Sent Events on ``GET /stream?prompt=...``, as FastAPI + OpenAI tutorials write it.

Each delta goes out as raw text, ``data: <delta>\\n\\n``, and the end is an in-band
``data: [DONE]\\n\\n``. An error (before or during the answer) raises inside the generator
after the 200 headers went out, so the body is simply cut.

Its flaws are the ones this shape has by nature, nothing added:

- a delta that is exactly ``[DONE]`` looks like the end to the client;
- a delta containing ``"\\n"`` breaks the SSE framing, so newlines are lost (a ``"\\n\\n"``
  token becomes an empty event, which clients drop).

Run: ``python sse_get_fastapi.py --port 0 --provider-url http://127.0.0.1:PORT/v1``.
"""

import argparse
import socket

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI

app = FastAPI()
client: AsyncOpenAI  # created in main() from --provider-url


@app.get("/stream")
async def stream(prompt: str) -> StreamingResponse:
    async def event_generator():
        response = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )
        async for chunk in response:
            delta = chunk.choices[0].delta.content
            if delta:
                yield f"data: {delta}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(event_generator(), media_type="text/event-stream")


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
    print(f"sse_get_fastapi listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""SSE on ``GET /api/stream?q=...`` with the synchronous OpenAI client in an async endpoint.

Same wire format as ``sse_get_fastapi``: ``data: <delta>\\n\\n`` per delta, then
``data: [DONE]\\n\\n``; an error cuts the body after the 200 headers.

The flaw, on purpose and very common: ``openai.OpenAI`` (blocking) is called inside an
``async def`` generator. Iterating its stream blocks the event loop for the whole answer, so
every other request on the server (even its first byte, even accepting it) waits until the
current answer is finished; a client that leaves is not noticed either until then, so the
provider call always runs to its end. Plus the two flaws this SSE shape has by nature: a
``[DONE]`` delta ends the stream early and ``"\\n"`` deltas are lost.

Run: ``python sse_sync_fastapi.py --port 0 --provider-url http://127.0.0.1:PORT/v1``.
"""

import argparse
import socket

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import OpenAI

app = FastAPI()
client: OpenAI  # created in main() from --provider-url


@app.get("/api/stream")
async def api_stream(q: str) -> StreamingResponse:
    async def generate():
        # Flaw, on purpose: a blocking client inside async code holds the event loop.
        completion = client.chat.completions.create(
            model="gpt-3.5-turbo",
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": q},
            ],
            stream=True,
        )
        for chunk in completion:
            content = chunk.choices[0].delta.content
            if content is not None and content != "":
                yield f"data: {content}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")


def main() -> None:
    global client
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--provider-url", default="https://api.openai.com/v1")
    args = parser.parse_args()
    client = OpenAI(base_url=args.provider_url, api_key="sk-test")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"sse_sync_fastapi listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()

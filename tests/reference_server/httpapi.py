"""The reference server's HTTP stream API from a test's side: create a stream, read its events."""

from __future__ import annotations

import json
from typing import Any

import httpx

from mockllm.sse import SSEComment, SSEEvent, SSEParser


def _as_dict(item: SSEEvent | SSEComment) -> dict[str, Any]:
    if isinstance(item, SSEComment):
        return {"comment": item.text.strip()}
    event: dict[str, Any] = {"event": item.event, "data": json.loads(item.data)}
    if item.id is not None:
        event["id"] = item.id
    return event


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events as dicts: ``event``, ``id``, ``data`` (JSON); comments as ``{"comment": ...}``.

    Decoded by the repository's one SSE decoder, :class:`mockllm.sse.SSEParser`.
    """
    parser = SSEParser()
    return [_as_dict(item) for item in [*parser.feed(text.encode()), *parser.feed_eof()]]


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/streams", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read_events(
    http: httpx.AsyncClient, url: str, *, stop_after: int | None = None, **headers: str
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    parser = SSEParser()
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        async for chunk in response.aiter_bytes():
            events += [_as_dict(item) for item in parser.feed(chunk)]
            tokens = [e for e in events if e.get("event") == "token"]
            if stop_after is not None and len(tokens) >= stop_after:
                return events
    return events

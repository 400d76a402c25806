"""The reference server's HTTP stream API from a test's side: create a stream, read its events."""

from __future__ import annotations

import json
from typing import Any

import httpx


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events as dicts: ``event``, ``id``, ``data`` (JSON); comments as ``{"comment": ...}``."""
    events = []
    for block in text.split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                events.append({"comment": line[1:].strip()})
            elif line:
                name, _, value = line.partition(": ")
                event[name] = json.loads(value) if name == "data" else value
        if "data" in event:
            events.append(event)
    return events


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/streams", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read_events(
    http: httpx.AsyncClient, url: str, *, stop_after: int | None = None, **headers: str
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    buffer = ""
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        async for chunk in response.aiter_text():
            buffer += chunk
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                events += parse_sse(block + "\n\n")
            tokens = [e for e in events if e.get("event") == "token"]
            if stop_after is not None and len(tokens) >= stop_after:
                return events
    return events

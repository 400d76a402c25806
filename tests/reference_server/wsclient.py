"""A thin v1 test client over the real ``websockets`` library (assertion helpers included)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from reference_server.protocol import PROTOCOL_V1 as V1
from scenarios.clients.v1 import encode_chat, encode_ping

TERMINAL = {"end", "error", "cancelled"}


def prompt(text: str, **directive: Any) -> list[dict[str, str]]:
    """One user turn carrying a ``[[mock ...]]`` directive for the mock provider."""
    parts = " ".join(f"{k}={v}" for k, v in directive.items())
    content = f"[[mock {parts}]] {text}" if parts else text
    return [{"role": "user", "content": content}]


@dataclass
class Received:
    start: dict[str, Any] | None = None
    tokens: list[dict[str, Any]] = field(default_factory=list)
    terminal: dict[str, Any] | None = None

    @property
    def indexes(self) -> list[int]:
        return [t["index"] for t in self.tokens]

    @property
    def text(self) -> str:
        return "".join(t["content"] for t in self.tokens if t["type"] == "token")


# Every connection a test opened, until the test ends (see abort_leftover_connections).
_OPENED: list[ClientConnection] = []


def abort_leftover_connections() -> int:
    """Abort the sockets of this test's connections that are still open; how many were.

    A test that fails before its ``close()`` would otherwise leave its socket to the garbage
    collector, whose ResourceWarning then fails whichever later test is running.
    """
    leftovers = [ws for ws in _OPENED if not ws.transport.is_closing()]
    _OPENED.clear()
    for ws in leftovers:
        ws.transport.abort()
    return len(leftovers)


class V1Client:
    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.others: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, base_ws_url: str, client_id: str = "c1", **kwargs: Any) -> V1Client:
        ws = await connect(f"{base_ws_url}/ws/chat/{client_id}", subprotocols=[V1], **kwargs)  # type: ignore[list-item]
        _OPENED.append(ws)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello", hello
        return cls(ws, hello)

    async def send(self, **message: Any) -> None:
        """Any message, malformed ones included (``chat`` and ``ping`` use the client library)."""
        await self.ws.send(json.dumps(message))

    async def chat(self, id: str, messages: list[dict[str, Any]], **extra: Any) -> None:
        await self.ws.send(encode_chat(id, messages, **extra))

    async def recv(self, wait_s: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), wait_s))
        return message

    async def recv_type(self, kind: str, wait_s: float = 10) -> dict[str, Any]:
        """Next message of ``kind``; pings and other messages on the way are kept aside."""
        while True:
            message = await self.recv(wait_s)
            if message["type"] == kind:
                return message
            self.others.append(message)

    async def collect(
        self, id: str, *, stop_after_tokens: int | None = None, wait_s: float = 20
    ) -> Received:
        """Messages of stream ``id`` until its terminal message (or N tokens)."""
        received = Received()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            message = await self.recv(max(0.01, deadline - loop.time()))
            if message.get("id") != id or message["type"] in ("ping", "pong"):
                self.others.append(message)
                continue
            if message["type"] == "start":
                received.start = message
            elif message["type"] in ("token", "tool_call"):
                received.tokens.append(message)
                if stop_after_tokens is not None and len(received.tokens) >= stop_after_tokens:
                    return received
            elif message["type"] in TERMINAL:
                received.terminal = message
                return received
            else:
                self.others.append(message)

    async def assert_usable(self) -> None:
        """The connection still answers: ping -> pong with the same ts."""
        await self.ws.send(encode_ping("still-there"))
        pong = await self.recv_type("pong")
        assert pong["ts"] == "still-there"

    async def drop(self) -> None:
        """Abrupt TCP close: no close frame (a phone losing its network)."""
        self.ws.transport.abort()
        # abort() closes the socket in a loop callback: run it before the caller blocks.
        for _ in range(3):
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.ws.close()


def assert_dense(indexes: list[int], count: int | None = None) -> None:
    """Every index 0..n-1 exactly once, in order."""
    expected = list(range(count if count is not None else len(indexes)))
    if indexes == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(indexes, expected, strict=False)) if a != b), None)
    if at is None:
        at = min(len(indexes), len(expected))
    raise AssertionError(
        f"{len(indexes)} indexes, {len(expected)} expected; first difference at position {at}: "
        f"got {indexes[max(at - 3, 0) : at + 4]}, expected {expected[max(at - 3, 0) : at + 4]}"
    )

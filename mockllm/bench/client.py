"""The bench's client: raw asyncio protocols, one callback per read, counting content chunks.

Two shapes of load:

- :func:`run_streams`: N streams, each its own connection and one request (starts spread
  over ``stagger`` seconds), for the long-stream and timing runs;
- :func:`run_users`: N users, each on one keep-alive connection sending requests back to back
  (for a duration, or a number of requests each), as a load test's virtual users do.

A read is timed with ``perf_counter`` and the content chunks in it are counted by their
marker; the time to first token (TTFT) of a request is from its request's write to the first
read that holds an SSE event. :func:`gap_errors_ms` compares every observed gap between
reads with the scheduled one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from mockllm.bench.servers import prompt
from mockllm.percentiles import percentile

__all__ = [
    "StreamResult",
    "all_active_window",
    "gap_errors_ms",
    "gap_summary",
    "run_streams",
    "run_users",
    "summary_ms",
]

# A content chunk of every server measured here carries this (the role chunk does not).
_TOKEN_MARK = b'{"content":'
_EVENT_MARK = b"data: "
_END = b"0\r\n\r\n"


@dataclass
class StreamResult:
    """One request: content chunks received, reads (time, chunks so far), TTFT, error."""

    tokens: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    error: str | None = None
    ttft: float | None = None  # seconds from the request's write to its first SSE event
    sent_at: float = 0.0


def request_bytes(tokens: int, itl_ms: float, *, keep_alive: bool) -> bytes:
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt(tokens, itl_ms)}],
            "stream": True,
        }
    ).encode()
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"X-Mock-Tokens: {tokens}\r\nX-Mock-Itl-Ms: {itl_ms:g}\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: ".encode()
        + connection
        + b"\r\n\r\n"
        + body
    )


class _Reader(asyncio.Protocol):
    """Reads responses on one connection; ``next_request`` says whether to send another."""

    def __init__(
        self,
        request: bytes,
        tokens: int,
        record: bool,
        next_request: Callable[[], bool],
        done: asyncio.Future[None],
    ):
        self.request = request
        self.expected = tokens
        self.record = record
        self.next_request = next_request
        self.done = done
        self.results: list[StreamResult] = []
        self.current = StreamResult()
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def _send(self) -> None:
        assert self.transport is not None
        self.current = StreamResult(sent_at=time.perf_counter())
        self.tail = b""
        self.transport.write(self.request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        result = self.current
        # A marker may straddle two reads: keep the last few bytes for the next count.
        window = self.tail + data
        found = window.count(_TOKEN_MARK)
        self.tail = window[-(len(_TOKEN_MARK) - 1) :]
        if result.ttft is None and _EVENT_MARK in window:
            result.ttft = now - result.sent_at
        if found:
            result.tokens += found
            if self.record:
                result.arrivals.append((now, result.tokens))
        # The chunked body's last chunk (no SSE event or chunk ends with these bytes).
        if data.endswith(_END):
            if result.tokens < self.expected:
                result.error = f"short response: {result.tokens} of {self.expected} chunks"
            self.results.append(result)
            if self.next_request():
                self._send()
            else:
                assert self.transport is not None
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        result = self.current
        if not self.results or self.results[-1] is not result:
            # The connection ended inside a response (or before one).
            result.error = str(exc) if exc is not None else "connection closed mid-response"
            self.results.append(result)
        if not self.done.done():
            self.done.set_result(None)


async def _connection(
    host: str,
    port: int,
    request: bytes,
    tokens: int,
    record: bool,
    next_request: Callable[[], bool],
    delay: float = 0.0,
) -> list[StreamResult]:
    if delay:
        await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        _, protocol = await loop.create_connection(
            lambda: _Reader(request, tokens, record, next_request, done), host, port
        )
    except OSError as exc:
        return [StreamResult(error=f"connect: {exc}")]
    await done
    return protocol.results


async def run_streams(
    host: str, port: int, streams: int, tokens: int, itl_ms: float, stagger: float, record: bool
) -> tuple[float, list[StreamResult]]:
    """``streams`` connections of one request each, started over ``stagger`` seconds."""
    rng = random.Random(0)
    delays = [rng.uniform(0, stagger) if stagger else 0.0 for _ in range(streams)]
    request = request_bytes(tokens, itl_ms, keep_alive=False)
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_connection(host, port, request, tokens, record, lambda: False, d) for d in delays)
    )
    return time.perf_counter() - start, [r for rs in results for r in rs]


async def run_users(
    host: str,
    port: int,
    users: int,
    tokens: int,
    itl_ms: float,
    *,
    duration_s: float | None = None,
    requests_each: int | None = None,
    record: bool = False,
) -> tuple[float, list[list[StreamResult]]]:
    """``users`` keep-alive connections, all started at once, each sending its next request
    as soon as its last response ended: until ``duration_s`` has passed, or
    ``requests_each`` times. The results per user, in order."""
    request = request_bytes(tokens, itl_ms, keep_alive=True)
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else float("inf")

    def more(done: list[int]) -> Callable[[], bool]:
        def next_request() -> bool:
            done[0] += 1
            if requests_each is not None and done[0] >= requests_each:
                return False
            return time.perf_counter() < deadline

        return next_request

    per_user = await asyncio.gather(
        *(_connection(host, port, request, tokens, record, more([0])) for _ in range(users))
    )
    return time.perf_counter() - start, list(per_user)


def gap_errors_ms(
    results: list[StreamResult],
    itl_ms: float,
    window: tuple[float, float] = (float("-inf"), float("inf")),
) -> list[float]:
    """|observed - scheduled| of every inter-token gap that lies inside ``window``."""
    low, high = window
    errors: list[float] = []
    for result in results:
        previous = None
        for when, total in result.arrivals:
            if previous is not None and previous[0] >= low and when <= high:
                prev_when, prev_total = previous
                # Several tokens in one read: the scheduled gap covers all of them.
                expected = (total - prev_total) * itl_ms
                errors.append(abs((when - prev_when) * 1000.0 - expected))
            previous = (when, total)
    return errors


def all_active_window(results: list[StreamResult]) -> tuple[float, float] | None:
    """From the last stream's first token to the first stream's last: all streams live."""
    spans = [(r.arrivals[0][0], r.arrivals[-1][0]) for r in results if r.arrivals]
    if not spans:
        return None
    low, high = max(s[0] for s in spans), min(s[1] for s in spans)
    return (low, high) if low < high else None


def summary_ms(values: list[float], *, scale: float = 1.0) -> dict[str, Any]:
    """Count, nearest-rank p50/p90/p99 and max of ``values`` x ``scale`` (None when empty)."""

    def pct(p: float) -> float | None:
        return round(percentile(values, p) * scale, 3) if values else None

    return {
        "count": len(values),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": round(max(values) * scale, 3) if values else None,
    }


def gap_summary(gaps: list[float]) -> dict[str, Any]:
    """Count, nearest-rank p50/p90/p99 and max of the gap errors (``None`` without gaps)."""
    return summary_ms(gaps)

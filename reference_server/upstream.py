"""The provider side: OpenAI-compatible streaming chat over httpx, as an async generator of events.

Pure parts (no I/O): :class:`SSELineSplitter` (bytes in, lines out), :class:`SSEDataDecoder`
(lines in, ``data`` payloads out),
:class:`ChunkDecoder` (chat chunks in, :data:`UpstreamEvent` out), :func:`parse_retry_after` and
:class:`RetryPolicy`. :class:`UpstreamClient` drives them with httpx and is the only place that
catches httpx exceptions: they become :class:`UpstreamError` subclasses here (see ``errors.py``).

Retries happen only before the first event was yielded; after that a failure ends the stream
with a retryable error, because the client already shows part of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reference_server.errors import UpstreamError, UpstreamStatusError, UpstreamTimeout
from reference_server.netbackend import asyncio_transport

__all__ = [
    "ChunkDecoder",
    "RetryPolicy",
    "SSEDataDecoder",
    "SSELineSplitter",
    "UpstreamClient",
    "UpstreamEvent",
    "UpstreamFinish",
    "UpstreamToken",
    "UpstreamToolCall",
    "parse_retry_after",
]


@dataclass(frozen=True)
class UpstreamToken:
    content: str


@dataclass(frozen=True)
class UpstreamToolCall:
    call_index: int
    call_id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class UpstreamFinish:
    finish_reason: str | None
    usage: dict[str, Any] | None


UpstreamEvent = UpstreamToken | UpstreamToolCall | UpstreamFinish


class SSELineSplitter:
    """Feed body bytes; get complete lines (decoded, without terminators) as they complete.

    CRLF, LF and CR each end a line (the SSE grammar), also when a CRLF is split across two
    reads. Splitting bytes is safe for UTF-8 (no multi-byte sequence contains CR or LF). This
    replaces httpx's ``aiter_lines`` (an incremental text decoder and a line decoder layered on
    ``aiter_bytes``), which cost more per token than the rest of the upstream parsing together.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._after_cr = False

    def feed(self, data: bytes) -> list[str]:
        if self._after_cr:
            self._after_cr = False
            if data[:1] == b"\n":
                data = data[1:]  # the LF of a CRLF whose CR ended the previous read
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._partial:
            data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        """The last line at EOF, if it had no terminator."""
        rest, self._partial = self._partial, b""
        return [rest.decode("utf-8", "replace")] if rest else []


class SSEDataDecoder:
    """Feed lines (without terminators); get each event's joined ``data`` when it dispatches."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """The pending event at EOF (a last event without its blank line)."""
        return self.feed("")


class ChunkDecoder:
    """OpenAI ``chat.completion.chunk`` payloads in, events out; remembers finish and usage."""

    def __init__(self) -> None:
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.events = 0

    def feed(self, data: str) -> list[UpstreamEvent]:
        if data.startswith("[DONE]"):
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise UpstreamError(f"malformed chunk from upstream: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("malformed chunk from upstream: not an object")
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"upstream error mid-stream: {message}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        events: list[UpstreamEvent] = []
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise UpstreamError("malformed chunk from upstream: no 'choices' list")
        for choice in choices:
            # n > 1 is not part of this protocol: only the first choice is streamed.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(UpstreamToken(content))
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                events.append(
                    UpstreamToolCall(
                        call_index=int(call.get("index", 0)),
                        call_id=call.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments") or "",
                    )
                )
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.events += len(events)
        return events

    def finish(self) -> UpstreamFinish:
        """The end of the body: complete, or a truncated stream (an error)."""
        if not self.done and self.finish_reason is None:
            raise UpstreamError("upstream stream ended without a finish_reason or [DONE]")
        return UpstreamFinish(self.finish_reason or "stop", self.usage)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (numbers only), else None."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP-date: we do not read the wall clock; fall back to backoff
        if seconds >= 0:
            return seconds
    return None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base_s: float = 0.2
    backoff_max_s: float = 4.0
    max_retry_after_s: float = 10.0

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float | None:
        """Seconds before retry number ``attempt + 1``, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        backoff: float = min(self.backoff_base_s * 2**attempt, self.backoff_max_s)
        return backoff * (0.75 + 0.25 * rng.random())


_httpx_log = logging.getLogger("httpx")

# How long to wait for the rest of a body after [DONE] (normally its last chunk is already
# there or follows at once); a provider that keeps it open just costs the connection.
_DRAIN_S = 1.0


async def _drain(body: AsyncIterator[bytes]) -> None:
    try:
        async with asyncio.timeout(_DRAIN_S):
            async for _ in body:
                pass
    except (httpx.HTTPError, TimeoutError):
        pass  # not reusable: response.aclose closes it


def _translate(exc: httpx.HTTPError) -> UpstreamError:
    """The one place httpx exceptions become ours."""
    if isinstance(exc, httpx.TimeoutException):
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "read"
        return UpstreamTimeout(f"upstream {kind} timeout ({type(exc).__name__})")
    return UpstreamError(f"upstream connection failed: {type(exc).__name__}: {exc}")


class UpstreamClient:
    """Streams chat completions from one OpenAI-compatible base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The leaner asyncio backend (netbackend.py). With a proxy configured in the
        # environment, httpx's own transport, which honours it (a given transport does not).
        self.asyncio_backend = transport is None and not urllib.request.getproxies()
        # Idle connections: with netbackend.ReusePool as many as streams at the peak (taking
        # and returning one is O(1)). httpcore 1.0's own pool (a given transport, a proxy)
        # walks all connections for each idle one on every request and close (quadratic):
        # few idle connections there.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=(
                max_connections if self.asyncio_backend else min(max_connections, 100)
            ),
        )
        if self.asyncio_backend:
            transport = asyncio_transport(limits)
        timeout = httpx.Timeout(
            connect=connect_timeout_s,
            read=read_timeout_s,
            write=read_timeout_s,
            pool=connect_timeout_s,
        )
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, limits=limits, transport=transport
        )
        # Every request is the same POST with another body: URL, headers and timeouts are
        # resolved once here, not merged and re-parsed by build_request for every stream.
        self._url = self._client.build_request("POST", "chat/completions").url
        self._headers = httpx.Headers(self._client.headers)
        self._headers["Content-Type"] = "application/json"
        self._extensions = {"timeout": timeout.as_dict()}
        # Requests go straight to the transport when we know it (ours, or one given): what
        # client.send adds per request is not used here (no auth, no redirects, no event hooks;
        # the prebuilt request carries no cookies, so the cookie jar it fills is never read) and
        # was ~5 % of the server's CPU with short answers. With a proxy from the environment,
        # httpx picks the transport per URL: client.send then.
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random(0)
        # Counts for /stats: responses open right now, and totals.
        self.in_flight = 0
        self.requests_total = 0
        self.retries_total = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream_chat(self, body: dict[str, Any]) -> AsyncGenerator[UpstreamEvent, None]:
        """Yield tokens and tool-call fragments, then exactly one :class:`UpstreamFinish`.

        Raises :class:`UpstreamError` (after bounded retries when nothing was yielded yet).
        Closing the generator (cancel, disconnect) closes the HTTP response at once, which the
        provider sees as a client disconnect.
        """
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        attempt = 0
        while True:
            yielded = False
            try:
                # aclosing: a cancelled or closed consumer must close the HTTP response now,
                # not whenever the garbage collector finalizes the inner generator.
                async with contextlib.aclosing(self._one_attempt(payload)) as events:
                    async for event in events:
                        yielded = True
                        yield event
                return
            except UpstreamError as exc:
                if yielded or not exc.retryable:
                    raise
                retry_after = exc.retry_after_s if isinstance(exc, UpstreamStatusError) else None
                delay = self._retry.delay(attempt, retry_after, self._rng)
                if delay is None:
                    raise
                attempt += 1
                self.retries_total += 1
                await self._sleep(delay)

    async def _one_attempt(self, payload: dict[str, Any]) -> AsyncGenerator[UpstreamEvent, None]:
        self.requests_total += 1
        # Counted from the request's start (connect and header wait included) to its close.
        self.in_flight += 1
        try:
            # Encoded as httpx's json= does; the request as the client's build_request makes it.
            content = json.dumps(
                payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
            request = httpx.Request(
                "POST",
                self._url,
                headers=self._headers,
                content=content.encode(),
                extensions=self._extensions,
            )
            if self._transport is None:
                response = await self._client.send(request, stream=True)
            else:
                response = await self._transport.handle_async_request(request)
                response.request = request
                if _httpx_log.isEnabledFor(logging.INFO):
                    # The line client.send logs, for whoever turned httpx's logger on.
                    _httpx_log.info(
                        'HTTP Request: %s %s "%s %d %s"',
                        request.method,
                        request.url,
                        response.http_version,
                        response.status_code,
                        response.reason_phrase,
                    )
            try:
                if response.status_code != 200:
                    raise await self._status_error(response)
                lines = SSELineSplitter()
                sse = SSEDataDecoder()
                chunks = ChunkDecoder()
                body = response.aiter_bytes()
                async for raw in body:
                    for line in lines.feed(raw):
                        data = sse.feed(line)
                        if data is None:
                            continue
                        for event in chunks.feed(data):
                            yield event
                        if chunks.done:
                            break
                    if chunks.done:
                        break
                if not chunks.done:
                    for line in lines.flush():
                        sse.feed(line)
                    last = sse.flush()
                    if last is not None:
                        for event in chunks.feed(last):
                            yield event
                yield chunks.finish()
                if chunks.done:
                    # The answer is complete (the finish is out); read the body's end so the
                    # connection goes back to the pool instead of a new one per stream.
                    await _drain(body)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _translate(exc) from None
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _status_error(response: httpx.Response) -> UpstreamStatusError:
        body = (await response.aread())[:2000]
        message = body.decode("utf-8", "replace")
        try:
            error = json.loads(body).get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                message = error["message"]
        except (ValueError, AttributeError):
            pass
        return UpstreamStatusError(
            response.status_code, message, retry_after_s=parse_retry_after(response.headers)
        )

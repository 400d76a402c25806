"""The provider side: one streamed answer per call, delivered as events to a callback.

On a token's way this is where the server reads it: the provider's body bytes go through the
decoder of the configured provider adapter (``providers/``: OpenAI chat, Anthropic Messages,
Ollama; each turns its stream into the same :data:`UpstreamEvent`), and ``manager.py``
appends each event to its stream. The adapter also builds the request (path, headers, body);
the rest is this module's and the same for every provider: :class:`UpstreamClient` drives the
request over ``upstream_http`` (or httpx, through a proxy) with retries, timeouts and cancel;
every failure reaches the caller as an :class:`UpstreamError` subclass (see ``errors.py``).
Pure parts (no I/O): :func:`parse_retry_after`, :func:`error_message` and :class:`RetryPolicy`.

Retries happen only before the first event was yielded; after that a failure ends the stream
with a retryable error, because the client already shows part of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from reference_server.errors import UpstreamError, UpstreamStatusError, UpstreamTimeout
from reference_server.providers import Provider, UpstreamEvent
from reference_server.providers.openai_chat import OpenAIChat
from reference_server.upstream_http import ConnectionPool, Endpoint

__all__ = ["RetryPolicy", "UpstreamClient", "error_message", "parse_retry_after"]


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


def error_message(body: bytes) -> str:
    """The message of a provider's error answer: ``error.message`` (OpenAI, Anthropic), a
    string ``error`` (Ollama), else the body as text."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return text
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) and error else text


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


# How long to wait for the rest of a body after the answer's end ([DONE], message_stop, the
# done line: normally the body's last chunk is already there or follows at once); a provider
# that keeps it open just costs the connection.
_DRAIN_S = 1.0

# How much of an error response's body is read for its message.
_ERROR_BODY_BYTES = 2000


class _Body(Protocol):
    """A response whose head is in: what :meth:`UpstreamClient._one_attempt` reads."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    async def read(self) -> bytes: ...
    async def stream_into(self, sink: Callable[[bytes], bool]) -> None: ...


class _HttpxBody:
    """An httpx response as a :class:`_Body` (the path through a proxy)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        # Decoded: httpx asks for gzip/deflate by default, and a proxy may pass it on.
        self._raw = response.aiter_bytes()

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await anext(self._raw)
        except StopAsyncIteration:
            return b""
        except httpx.HTTPError as exc:
            raise _translate(exc) from None

    async def stream_into(self, sink: Callable[[bytes], bool]) -> None:
        while (data := await self.read()) and sink(data):
            pass


def _translate(exc: httpx.HTTPError) -> UpstreamError:
    """The one place httpx exceptions become ours."""
    if isinstance(exc, httpx.TimeoutException):
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "read"
        return UpstreamTimeout(f"upstream {kind} timeout ({type(exc).__name__})")
    return UpstreamError(f"upstream connection failed: {type(exc).__name__}: {exc}")


async def _read_at_most(body: _Body, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < limit and (part := await body.read()):
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:limit]


async def _drain(body: _Body) -> None:
    """Read the body's end so its connection can be reused; give up after ``_DRAIN_S``."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            await body.stream_into(_keep_reading)
    except (UpstreamError, TimeoutError):
        pass  # not reusable: the connection is closed instead


def _keep_reading(data: bytes) -> bool:
    return True


def _uses_proxy(url: str) -> bool:
    """Whether the environment sends requests to ``url`` through a proxy."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.netloc)


class UpstreamClient:
    """Streams answers from one base URL, in the format of one provider adapter (OpenAI chat
    unless ``provider`` says otherwise); the adapter appends its path to ``base_url``.

    Requests go through :class:`~reference_server.upstream_http.ConnectionPool` (this
    server's lean HTTP/1.1 client, plain or TLS). When the environment configures a proxy for
    the URL (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``), through httpx, which speaks to
    proxies.
    """

    def __init__(
        self,
        base_url: str,
        *,
        provider: Provider | None = None,
        api_key: str | None = None,
        default_max_tokens: int | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider = provider or OpenAIChat()
        url = base_url.rstrip("/") + provider.path
        headers = {**provider.headers(api_key), "User-Agent": "streamharness-reference-server"}
        self.via_proxy = _uses_proxy(url)
        self._pool: ConnectionPool | None = None
        self._httpx: httpx.AsyncClient | None = None
        if self.via_proxy:
            timeout = httpx.Timeout(
                connect=connect_timeout_s,
                read=read_timeout_s,
                write=read_timeout_s,
                pool=connect_timeout_s,
            )
            limits = httpx.Limits(max_connections=max_connections)
            self._httpx = httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits)
            self._url = url
        else:
            endpoint = Endpoint.from_url(url)
            # Certificates verified as httpx verifies them (its CA bundle).
            ssl_context = httpx.create_ssl_context() if endpoint.scheme == "https" else None
            self._pool = ConnectionPool(
                endpoint,
                headers=headers,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        self._default_max_tokens = default_max_tokens
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random(0)
        # Counts for /stats: responses open right now, and totals.
        self.in_flight = 0
        self.requests_total = 0
        self.retries_total = 0

    @property
    def connections_opened(self) -> int | None:
        """TCP connections the pool opened so far (None through a proxy)."""
        return None if self._pool is None else self._pool.opened

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()

    async def stream_chat(
        self, body: dict[str, Any], on_event: Callable[[UpstreamEvent], None]
    ) -> None:
        """Stream one chat (``body``: an OpenAI chat body without the stream flags, which the
        provider adapter turns into its request; ``default_max_tokens`` when it has no
        ``max_tokens``): ``on_event`` gets tokens and tool-call fragments, then exactly one
        :class:`UpstreamFinish`; returns when the response is done with.

        ``on_event`` is called synchronously as bytes arrive (with this server's own client,
        from the connection's ``data_received``): a token reaches the stream's record without
        a task wake-up of its own. It must not block; an exception from it ends the stream and
        propagates here. Raises :class:`UpstreamError` (after bounded retries when no event was
        delivered yet). Cancelling the call closes the HTTP response at once, which the
        provider sees as a client disconnect.
        """
        if body.get("max_tokens") is None and self._default_max_tokens is not None:
            body = {**body, "max_tokens": self._default_max_tokens}
        payload = self.provider.request_body(body)
        delivered = False

        def deliver(event: UpstreamEvent) -> None:
            nonlocal delivered
            delivered = True
            on_event(event)

        attempt = 0
        while True:
            try:
                await self._one_attempt(payload, deliver)
                return
            except UpstreamError as exc:
                if delivered or not exc.retryable:
                    raise
                retry_after = exc.retry_after_s if isinstance(exc, UpstreamStatusError) else None
                delay = self._retry.delay(attempt, retry_after, self._rng)
                if delay is None:
                    raise
                attempt += 1
                self.retries_total += 1
                await self._sleep(delay)

    @contextlib.asynccontextmanager
    async def _post(self, content: bytes) -> AsyncIterator[_Body]:
        if self._pool is not None:
            async with self._pool.post(content) as exchange:
                yield exchange
            return
        assert self._httpx is not None
        try:
            request = self._httpx.build_request("POST", self._url, content=content)
            response = await self._httpx.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _translate(exc) from None
        try:
            yield _HttpxBody(response)
        finally:
            await response.aclose()

    async def _one_attempt(
        self, payload: dict[str, Any], on_event: Callable[[UpstreamEvent], None]
    ) -> None:
        self.requests_total += 1
        # Counted from the request's start (connect and header wait included) to its close.
        self.in_flight += 1
        try:
            # Encoded as httpx's json= does.
            content = json.dumps(
                payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            async with self._post(content) as response:
                if response.status != 200:
                    raise await self._status_error(response)
                decoder = self.provider.decoder()

                def sink(data: bytes) -> bool:
                    for event in decoder.feed(data):
                        on_event(event)
                    if decoder.error is not None:
                        raise decoder.error
                    return not decoder.done

                await response.stream_into(sink)
                if decoder.done:
                    # The answer is complete (the finish is out); read the body's end so the
                    # connection goes back to the pool instead of a new one per stream.
                    await _drain(response)
                else:
                    for event in decoder.end():
                        on_event(event)
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _status_error(response: _Body) -> UpstreamStatusError:
        body = await _read_at_most(response, _ERROR_BODY_BYTES)
        return UpstreamStatusError(
            response.status, error_message(body), retry_after_s=parse_retry_after(response.headers)
        )

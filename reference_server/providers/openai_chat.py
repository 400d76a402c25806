"""OpenAI chat completions: ``POST {base}/chat/completions``, streamed as SSE ``data:`` chunks.

The conversation the server holds is already an OpenAI chat body, so the request is that body
with the stream flags. The decoder reads the SSE events with mockllm/sse.py (the one SSE
decoder) and each chunk with :class:`ChunkDecoder`; ``[DONE]`` ends the answer. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mockllm.sse import SSEEvent, SSEParser
from reference_server.errors import UpstreamError
from reference_server.providers.events import (
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    UpstreamToolCall,
)

__all__ = ["ChunkDecoder", "EventDecoder", "OpenAIChat"]


class OpenAIChat:
    """The OpenAI chat adapter (any OpenAI-compatible provider: base URL ``…/v1``)."""

    name = "openai"
    path = "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def request_body(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        return {**chat, "stream": True, "stream_options": {"include_usage": True}}

    def decoder(self) -> EventDecoder:
        return EventDecoder()


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


class EventDecoder:
    """A streamed chat response's body bytes in, events out (SSE, then chunks): a
    :class:`~reference_server.providers.events.StreamDecoder`; ``[DONE]`` is the end."""

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._chunks = ChunkDecoder()
        self.done = False
        self.error: UpstreamError | None = None

    def feed(self, data: bytes) -> list[UpstreamEvent]:
        if self.done or self.error is not None:
            return []
        events: list[UpstreamEvent] = []
        chunks = self._chunks
        for item in self._sse.feed(data):
            if not isinstance(item, SSEEvent):
                continue  # a comment: the provider's keep-alive
            try:
                events += chunks.feed(item.data)
            except UpstreamError as exc:
                self.error = exc
                break
            if chunks.done:
                self.done = True
                events.append(chunks.finish())
                break
        return events

    def end(self) -> list[UpstreamEvent]:
        if self.error is not None:
            raise self.error
        if self.done:
            return []
        self.done = True
        # A provider's last event may lack its blank line; OpenAI's SDK reads it, so do we.
        events: list[UpstreamEvent] = []
        for item in self._sse.feed_eof(dispatch_unfinished=True):
            if isinstance(item, SSEEvent):
                events += self._chunks.feed(item.data)
        return [*events, self._chunks.finish()]

"""Ollama's native chat: ``POST {base}/chat`` (base ``…/api``), streamed as NDJSON lines.

Request: the OpenAI-shaped conversation becomes an ``/api/chat`` body (content as text, images
as base64 ``images``, tool-call arguments as objects, tool results with ``tool_name``;
``max_tokens`` and ``temperature`` as ``options.num_predict`` / ``options.temperature``).

Stream: one JSON object per line. ``message.content`` is a token; ``message.tool_calls`` come
whole (arguments as an object, relayed as its JSON text), numbered from 0 across the stream;
the line with ``done: true`` ends the answer with ``done_reason`` (``stop`` becomes
``tool_calls`` when the answer called tools) and the counts (``prompt_eval_count``,
``eval_count``) as usage. A line ``{"error": ...}`` is a retryable upstream error. Blank lines
are skipped (Ollama sends none; a proxy might). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reference_server.errors import UpstreamError
from reference_server.providers.events import (
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    UpstreamToolCall,
    decode_each,
    usage_of,
)

__all__ = ["NDJSONDecoder", "OllamaChat", "ollama_request"]


class OllamaChat:
    """The Ollama ``/api/chat`` adapter."""

    name = "ollama"
    path = "/chat"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        if api_key:  # a hosted Ollama (or a proxy in front of one) takes a bearer key
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def request_body(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        return ollama_request(chat)

    def decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()


def _refuse(message: str) -> UpstreamError:
    # The client's conversation, not the provider, is at fault: asking again cannot help.
    return UpstreamError(
        f"cannot send this chat to the ollama provider: {message}", retryable=False
    )


def _content(content: Any, where: str) -> tuple[str, list[str]]:
    """OpenAI content as Ollama's text and base64 images."""
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise _refuse(f"{where}.content must be a string or a list of parts")
    text: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            text.append(str(part.get("text", "")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if not isinstance(url, str) or not url.startswith("data:"):
                raise _refuse(f"{where}: Ollama takes images as data: URLs (base64) only")
            images.append(url.partition(",")[2])
        else:
            raise _refuse(f"{where}: content part type {kind!r} has no Ollama equivalent")
    return "".join(text), images


def _tool_calls(calls: list[Any], where: str) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise _refuse(f"{where}.tool_calls[{i}] has no function")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _refuse(f"{where}.tool_calls[{i}].function.arguments must be a JSON object")
        out.append({"function": {"name": function.get("name"), "arguments": parsed}})
    return out


def ollama_request(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/api/chat`` body (streamed) for an OpenAI-shaped chat body."""
    messages: list[dict[str, Any]] = []
    names: dict[Any, Any] = {}  # tool call id -> function name, for the tool results
    raw = chat.get("messages")
    for position, message in enumerate(raw if isinstance(raw, list) else []):
        where = f"messages[{position}]"
        role = message.get("role")
        text, images = _content(message.get("content"), where)
        out: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": text}
        if images:
            out["images"] = images
        calls = message.get("tool_calls")
        if role == "assistant" and calls:
            out["tool_calls"] = _tool_calls(calls, where)
            for call in calls:
                names[call.get("id")] = (call.get("function") or {}).get("name")
        if role == "tool" and names.get(message.get("tool_call_id")):
            out["tool_name"] = names[message.get("tool_call_id")]
        messages.append(out)
    body: dict[str, Any] = {"model": chat.get("model"), "messages": messages, "stream": True}
    options = {
        name: chat[key]
        for key, name in (("max_tokens", "num_predict"), ("temperature", "temperature"))
        if chat.get(key) is not None
    }
    if options:
        body["options"] = options
    if chat.get("tools"):
        body["tools"] = chat["tools"]  # Ollama takes OpenAI's function tool shape
    return body


class NDJSONDecoder:
    """A streamed ``/api/chat`` response's bytes in, events out: a
    :class:`~reference_server.providers.events.StreamDecoder`; the ``done`` line is the end."""

    def __init__(self) -> None:
        self._partial = b""
        self._calls = 0
        self.done = False
        self.error: UpstreamError | None = None

    def feed(self, data: bytes) -> list[UpstreamEvent]:
        if self.done or self.error is not None:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        events, self.error = decode_each(lines, self._line)
        return events

    def end(self) -> list[UpstreamEvent]:
        if self.error is not None:
            raise self.error
        if self.done:
            return []
        events: list[UpstreamEvent] = []
        rest, self._partial = self._partial, b""
        if not self._line(rest, events):  # the last line may lack its newline
            raise UpstreamError("upstream stream ended without its done line")
        return events

    def _line(self, line: bytes, events: list[UpstreamEvent]) -> bool:
        """Append the line's events; True once it was the done line."""
        if not line.strip():
            return False
        try:
            part = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UpstreamError(f"malformed line from upstream: {line[:80]!r}") from None
        if not isinstance(part, dict):
            raise UpstreamError("malformed line from upstream: not an object")
        if part.get("error"):
            raise UpstreamError(f"upstream error mid-stream: {part['error']}")
        message = part.get("message")
        if isinstance(message, Mapping):
            content = message.get("content")
            if isinstance(content, str) and content:
                events.append(UpstreamToken(content))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                arguments = function.get("arguments")
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments or {}, ensure_ascii=False)
                call_id = call.get("id")
                events.append(
                    UpstreamToolCall(
                        self._calls,
                        call_id if isinstance(call_id, str) else None,
                        function.get("name"),
                        arguments,
                    )
                )
                self._calls += 1
        if part.get("done") is True:
            self.done = True
            reason = part.get("done_reason") or "stop"
            if reason == "stop" and self._calls:
                reason = "tool_calls"
            usage = usage_of(part.get("prompt_eval_count"), part.get("eval_count"))
            events.append(UpstreamFinish(reason, usage))
        return self.done

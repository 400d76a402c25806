"""Anthropic Messages: ``POST {base}/messages`` (base ``…/v1``), streamed as named SSE events.

Request: the OpenAI-shaped conversation the server holds becomes a Messages body (system
messages to ``system``, tool calls to ``tool_use`` blocks, tool results to ``tool_result``
blocks of a user turn, function tools to ``input_schema`` tools, ``max_tokens`` always set);
headers ``x-api-key`` and ``anthropic-version``.

Stream: dispatched on the ``event:`` line, as Anthropic's SDK does (events without one, and
``ping``, are skipped; unknown ones too): ``text_delta`` is a token, a ``tool_use`` block and
its ``input_json_delta`` fragments are a tool call (numbered from 0 among the tool blocks),
``message_delta`` carries the stop reason and usage, ``message_stop`` ends the answer. An
``error`` event (``overloaded_error``) is a retryable upstream error. Stop reasons and usage
come out in the v1 protocol's vocabulary (``end_turn`` -> ``stop``, ``max_tokens`` ->
``length``, ``tool_use`` -> ``tool_calls``; ``input_tokens`` plus cache reads and writes ->
``prompt_tokens``). Pure.
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
    decode_each,
    usage_of,
)

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicMessages", "MessagesDecoder"]

ANTHROPIC_VERSION = "2023-06-01"
# Messages requires max_tokens; a client that sets none gets this ceiling.
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class AnthropicMessages:
    """The Anthropic Messages adapter."""

    name = "anthropic"
    path = "/messages"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def request_body(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        return messages_request(chat)

    def decoder(self) -> MessagesDecoder:
        return MessagesDecoder()


def _refuse(message: str) -> UpstreamError:
    # The client's conversation, not the provider, is at fault: asking again cannot help.
    return UpstreamError(
        f"cannot send this chat to the anthropic provider: {message}", retryable=False
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise _refuse("an image_url part without a url")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[len("data:") :].removesuffix(";base64")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _refuse(f"message content must be a string or a list of parts, got {content!r:.60}")
    out: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            raise _refuse(f"a content part must be an object, got {part!r:.60}")
        if part.get("type") == "image_url":
            out.append(_image_block(part))
        else:
            out.append(dict(part))  # text parts have the same shape; others as the client wrote
    return out


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _refuse(f"{where} has no function name")
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise _refuse(f"{where}.function.arguments must be a JSON object, got {arguments!r:.60}")
    return {"type": "tool_use", "id": call.get("id"), "name": function["name"], "input": tool_input}


def _convert_messages(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for position, message in enumerate(messages if isinstance(messages, list) else []):
        where = f"messages[{position}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_text_of(content))
        elif role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": content if isinstance(content, str | list) else "",
            }
            last = out[-1] if out else None
            # Every result of one assistant turn goes into the one user turn after it.
            if last is not None and last["role"] == "user" and _has_results(last):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        elif role == "assistant":
            blocks = _blocks(content)
            calls = message.get("tool_calls") or []
            blocks += [_tool_use(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]
            if not calls and isinstance(content, str):
                out.append({"role": "assistant", "content": content})
            else:
                out.append({"role": "assistant", "content": blocks})
        elif role == "user":
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and _has_results(last):
                last["content"] += _blocks(content)  # text after the tool results, one turn
            else:
                out.append(
                    {
                        "role": "user",
                        "content": content if isinstance(content, str) else _blocks(content),
                    }
                )
        else:
            raise _refuse(f"{where}.role {role!r} has no Anthropic equivalent")
    return system, out


def _has_results(message: Mapping[str, Any]) -> bool:
    content = message["content"]
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


def _tool(tool: Any) -> Any:
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        return tool  # Anthropic's own tool types pass as the client wrote them
    function = tool.get("function") or {}
    out: dict[str, Any] = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _refuse(f"tool_choice {choice!r} is not auto, required or none")
        return _TOOL_CHOICES[choice]
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if isinstance(function, Mapping) and choice.get("type") == "function":
        return {"type": "tool", "name": function.get("name")}
    return choice


def messages_request(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages body (streamed) for an OpenAI-shaped chat body."""
    system, messages = _convert_messages(chat.get("messages"))
    body: dict[str, Any] = {
        "model": chat.get("model"),
        "max_tokens": chat.get("max_tokens") or DEFAULT_MAX_TOKENS,
        "messages": messages,
        "stream": True,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if chat.get("temperature") is not None:
        body["temperature"] = chat["temperature"]
    if chat.get("tools"):
        body["tools"] = [_tool(t) for t in chat["tools"]]
    if chat.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(chat["tool_choice"])
    metadata = chat.get("metadata")
    # Messages defines one metadata key; the API refuses others.
    if isinstance(metadata, Mapping) and "user_id" in metadata:
        body["metadata"] = {"user_id": metadata["user_id"]}
    return body


def _index(payload: Mapping[str, Any]) -> int:
    index = payload.get("index")
    if not isinstance(index, int):
        raise UpstreamError(f"malformed {payload.get('type')} event from upstream: no index")
    return index


class MessagesDecoder:
    """A streamed Messages response's bytes in, events out: a
    :class:`~reference_server.providers.events.StreamDecoder`; ``message_stop`` is the end."""

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self.done = False
        self.error: UpstreamError | None = None

    def feed(self, data: bytes) -> list[UpstreamEvent]:
        if self.done or self.error is not None:
            return []
        events, self.error = decode_each(self._sse.feed(data), self._event)
        return events

    def end(self) -> list[UpstreamEvent]:
        if self.error is not None:
            raise self.error
        if self.done:
            return []
        events: list[UpstreamEvent] = []
        for item in self._sse.feed_eof(dispatch_unfinished=True):
            if self._event(item, events):
                return events
        if self._stop_reason is None:
            raise UpstreamError("upstream stream ended without a stop_reason (no message_delta)")
        # message_delta said how it ended; only message_stop is missing.
        events.append(self._finish())
        return events

    def _finish(self) -> UpstreamFinish:
        self.done = True
        reason = self._stop_reason
        usage = self._usage
        prompt = usage.get("input_tokens")
        if isinstance(prompt, int):
            for cached in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                if isinstance(usage.get(cached), int):
                    prompt += usage[cached]
        return UpstreamFinish(
            FINISH_REASONS.get(reason, reason) if reason else "stop",
            usage_of(prompt, usage.get("output_tokens")),
        )

    def _event(self, item: object, events: list[UpstreamEvent]) -> bool:
        """Append the event's events; True once it ended the answer (``message_stop``)."""
        if not isinstance(item, SSEEvent) or item.event in ("ping", "message"):
            return False  # comments, pings and events without a name: Anthropic's SDK skips them
        try:
            payload = json.loads(item.data)
        except json.JSONDecodeError:
            raise UpstreamError(f"malformed event from upstream: {item.data[:80]!r}") from None
        if not isinstance(payload, dict):
            raise UpstreamError(f"malformed {item.event} event from upstream: not an object")
        kind = item.event
        if kind == "error":
            error = payload.get("error")
            if isinstance(error, Mapping):
                detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
            else:
                detail = str(error)
            raise UpstreamError(f"upstream error mid-stream: {detail}")
        if kind == "message_start":
            message = payload.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            if isinstance(usage, Mapping):
                self._usage.update(usage)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "text" and block.get("text"):
                events.append(UpstreamToken(block["text"]))
            elif block.get("type") == "tool_use":
                call = self._tools[_index(payload)] = len(self._tools)
                tool_input = block.get("input")
                arguments = json.dumps(tool_input, ensure_ascii=False) if tool_input else ""
                events.append(UpstreamToolCall(call, block.get("id"), block.get("name"), arguments))
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                events.append(UpstreamToken(delta["text"]))
            elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                tool = self._tools.get(_index(payload))
                if tool is not None:
                    events.append(UpstreamToolCall(tool, None, None, delta["partial_json"]))
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            if delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            usage = payload.get("usage")
            if isinstance(usage, Mapping):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            events.append(self._finish())
            return True
        # content_block_stop and event types this server does not know: nothing to relay.
        return False

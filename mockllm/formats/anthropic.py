"""Anthropic Messages (``POST /v1/messages``): request, stream events, body and errors.

Shapes follow the ``anthropic`` SDK's own fixtures and parser (WIRE_FORMATS.md section 3):
every event has an ``event:`` line equal to its ``type`` (the SDK skips events without one);
a stream is ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta``, or ``input_json_delta`` fragments of a ``tool_use`` block), ``content_block_stop``,
``message_delta`` (``stop_reason``, cumulative ``usage``), ``message_stop``. A mid-stream
error is an ``error`` event (the SDK raises ``APIStatusError`` from it); an error answer is
``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the status that picks
the SDK's exception class (529 ``overloaded_error``: ``OverloadedError``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mockllm.errors import InvalidRequest, MockError
from mockllm.formats.base import (
    FAULT_MESSAGE,
    EventScript,
    Format,
    Headers,
    dumps,
    event_script,
    expect,
    joined,
    one_tool,
    positive_int,
    required_model,
    vendor_body,
)
from mockllm.formats.openai_chat import escape_text
from mockllm.generation import Body, Plan
from mockllm.request import ChatRequest, Tool

__all__ = ["AnthropicMessages", "error_type_for"]

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
# status -> Anthropic's error type (anthropic/_error_classes.py maps the status to a class).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_FAULT_MESSAGES = {
    429: "Number of request tokens has exceeded your rate limit (mockllm fault).",
    529: "Overloaded",
}
_ROLES = ("user", "assistant")


def error_type_for(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _tool_call_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


# -- the request ------------------------------------------------------------------------------


def _blocks_text(blocks: list[Any]) -> str:
    return "".join(
        b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _blocks_text(content)
    return ""


def _convert_message(message: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI chat messages (a tool result is its own message)."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where}: expected an object.", param=where, code="invalid_type")
    role = message.get("role")
    if role not in _ROLES:
        raise InvalidRequest(
            f"{where}.role: Input should be 'user' or 'assistant'.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None:
        raise InvalidRequest(
            f"{where}.content: Field required.",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content: expected a string or a list of content blocks.",
            param=f"{where}.content",
            code="invalid_type",
        )
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(
                f"{where}.content.{i}: expected a content block with a type.",
                param=f"{where}.content.{i}",
                code="invalid_type",
            )
        kind = block["type"]
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(block.get("tool_use_id", "")),
                    "content": _content_text(block.get("content")),
                }
            )
        elif kind == "tool_use":
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": json.dumps(
                            block.get("input") or {}, separators=(",", ":"), ensure_ascii=False
                        ),
                    },
                }
            )
    if calls:
        out.append({"role": "assistant", "content": "".join(texts) or None, "tool_calls": calls})
    elif texts or not out:
        # Text blocks become one string: the same words give the same seeded answer as a
        # string content, and as the same prompt sent to Chat Completions.
        out.append({"role": role, "content": "".join(texts)})
    return out


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("tools: expected a list.", param="tools", code="invalid_type")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(
                f"tools.{i}.name: Field required.",
                param=f"tools.{i}.name",
                code="missing_required_parameter",
            )
        tools.append(one_tool(tool["name"], tool.get("input_schema")))
    return tuple(tools)


def _parse_tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "auto":
        return "auto", None
    if kind == "none":
        return "none", None
    if kind == "any":
        if not tools:
            raise InvalidRequest(
                "tool_choice: 'any' needs at least one tool in 'tools'.", param="tool_choice"
            )
        return "required", tools[0].name
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or name not in {t.name for t in tools}:
            raise InvalidRequest(
                f"tool_choice.name: {name!r} is not among 'tools'.", param="tool_choice.name"
            )
        return "function", name
    raise InvalidRequest(
        "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'.",
        param="tool_choice.type",
        code="invalid_value",
    )


def parse_messages_request(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body, "model: Field required.")
    max_tokens = positive_int(body, "max_tokens")
    if max_tokens is None:
        raise InvalidRequest(
            "max_tokens: Field required.", param="max_tokens", code="missing_required_parameter"
        )
    raw_messages = body.get("messages")
    if raw_messages is None:
        raise InvalidRequest(
            "messages: Field required.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest(
            "messages: expected a non-empty list.", param="messages", code="invalid_type"
        )
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, (str, list)):
            raise InvalidRequest(
                "system: expected a string or a list of text blocks.",
                param="system",
                code="invalid_type",
            )
        messages.append({"role": "system", "content": _content_text(system)})
    for i, message in enumerate(raw_messages):
        messages.extend(_convert_message(message, f"messages.{i}"))
    stream = expect(body, "stream", bool, "a boolean") or False
    tools = _parse_tools(body.get("tools"))
    tool_choice, forced = _parse_tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=stream,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
    )


# -- the answer -------------------------------------------------------------------------------


def _usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def error_event(error_type: str, message: str, request_id: str | None = None) -> bytes:
    payload: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        payload["request_id"] = request_id
    return _event("error", dumps(payload))


SHUTDOWN_EVENT = error_event(
    "api_error", "The server is shutting down; this stream ended early. Retry the request."
)

_TEXT_PREFIX = _event("content_block_delta", b"")[: -len(b"\n\n")] + (
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
)
_ARGS_PREFIX = _event("content_block_delta", b"")[: -len(b"\n\n")] + (
    b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":'
)
_DELTA_SUFFIX = b"}}\n\n"


class _Encoder:
    whole_tool_call = False

    def __init__(self, plan: Plan, message_id: str):
        self.plan = plan
        self.message_id = message_id

    def start(self) -> bytes:
        plan = self.plan
        choice = plan.choices[0]
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": plan.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(plan, 0),
        }
        if choice.tool_call is not None:
            call_id, name, _ = choice.tool_call
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": _tool_call_id(call_id),
                "name": name,
                "input": {},
            }
        else:
            block = {"type": "text", "text": ""}
        return (
            _event("message_start", dumps({"type": "message_start", "message": message}))
            + _event(
                "content_block_start",
                dumps({"type": "content_block_start", "index": 0, "content_block": block}),
            )
            + _event("ping", b'{"type":"ping"}')
        )

    def text(self, text: str) -> bytes:
        return _TEXT_PREFIX + escape_text(text) + _DELTA_SUFFIX

    def arguments(self, fragment: str) -> bytes:
        return _ARGS_PREFIX + escape_text(fragment) + _DELTA_SUFFIX

    def run(self, texts: Sequence[str], tool: bool) -> bytes:
        return joined(_ARGS_PREFIX if tool else _TEXT_PREFIX, texts, _DELTA_SUFFIX)

    def finish(self) -> bytes:
        plan = self.plan
        reason = _STOP_REASONS.get(plan.choices[0].finish_reason, "end_turn")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": plan.completion_tokens},
        }
        return _event("content_block_stop", b'{"type":"content_block_stop","index":0}') + _event(
            "message_delta", dumps(delta)
        )

    def end(self) -> bytes:
        return _event("message_stop", b'{"type":"message_stop"}')

    def error(self) -> bytes:
        return error_event("overloaded_error", "Overloaded", self.message_id)

    def malformed(self) -> bytes:
        whole = self.text("garbled")
        return whole[: len(whole) // 2] + b"\n\n"

    def shutdown(self) -> bytes:
        return SHUTDOWN_EVENT


class AnthropicMessages(Format):
    name = "anthropic_messages"
    id_prefix = "msg_"

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_messages_request(body)

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        message_id = self.response_id(plan.completion_id)
        return event_script(plan, lambda: _Encoder(plan, message_id), SHUTDOWN_EVENT)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        choice = plan.choices[0]
        content: list[dict[str, Any]]
        if choice.tool_call is not None:
            call_id, name, arguments = choice.tool_call
            content = [
                {
                    "type": "tool_use",
                    "id": _tool_call_id(call_id),
                    "name": name,
                    "input": json.loads(arguments),
                }
            ]
        else:
            content = [{"type": "text", "text": choice.text}]
        data = dumps(
            {
                "id": self.response_id(plan.completion_id),
                "type": "message",
                "role": "assistant",
                "model": plan.model,
                "content": content,
                "stop_reason": _STOP_REASONS.get(choice.finish_reason, "end_turn"),
                "stop_sequence": None,
                "usage": _usage(plan, plan.completion_tokens),
            }
        )
        return vendor_body(plan, data)

    def error(self, exc: MockError) -> tuple[int, Any]:
        return exc.status, {
            "type": "error",
            "error": {"type": error_type_for(exc.status), "message": exc.message},
        }

    def status_error(self, status: int) -> Any:
        return {
            "type": "error",
            "error": {
                "type": error_type_for(status),
                "message": _FAULT_MESSAGES.get(status, FAULT_MESSAGE),
            },
        }

    def headers(self, response_id: str) -> Headers:
        request_id = "req_" + response_id.removeprefix(self.id_prefix)
        return [(b"request-id", request_id.encode()), (b"x-request-id", response_id.encode())]

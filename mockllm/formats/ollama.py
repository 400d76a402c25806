"""Ollama (``POST /api/chat``, ``POST /api/generate``): request, NDJSON lines, body, errors.

Shapes follow WIRE_FORMATS.md section 4 and the ``ollama`` client's parser
(``ollama/_client.py``, ``ollama/_types.py``): one JSON object per line, no blank line ever
(the client would fail on it); every ``/api/chat`` line carries ``message`` with ``role``; the
last line has ``done: true``, ``done_reason`` (``stop``, ``length``), the token counts and
nanosecond durations (from the answer's schedule). A tool call comes whole in one line, its
``arguments`` an object. An error answer is ``{"error": "..."}`` with the status; a mid-stream
error is an ``{"error": ...}`` line (the client raises ``ResponseError`` from both). A stream
is the default, as with Ollama; ``"stream": false`` gives the last line with the whole text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from mockllm.errors import InvalidRequest, MockError
from mockllm.formats.base import (
    NDJSON_HEADERS,
    EventScript,
    Format,
    Headers,
    TokenFrameEncoder,
    dumps,
    event_script,
    expect,
    one_tool,
    required_model,
    tool_args_json,
    vendor_body,
)
from mockllm.generation import Body, Plan
from mockllm.request import ChatRequest, Tool

__all__ = ["OllamaChat", "OllamaGenerate"]

_ROLES = ("system", "user", "assistant", "tool")
_ERROR_MESSAGE = "an error was encountered while running the model (mockllm fault)"
_SHUTDOWN_LINE = (
    b'{"error":"The server is shutting down; this stream ended early. Retry the request."}\n'
)
_STATUS_MESSAGES = {
    429: "server busy, please try again. maximum pending requests exceeded (mockllm fault)",
    503: "server busy, please try again (mockllm fault)",
}


def _created_at(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the request ------------------------------------------------------------------------------


def _options(body: dict[str, Any]) -> tuple[int | None, int | None]:
    """(max tokens, seed) from ``options.num_predict`` and ``options.seed``."""
    options = expect(body, "options", dict, "an object") or {}
    predict = options.get("num_predict")
    if predict is not None and (isinstance(predict, bool) or not isinstance(predict, int)):
        raise InvalidRequest("options.num_predict: expected an integer.", param="options")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("options.seed: expected an integer.", param="options")
    # Ollama: -1 is no limit, -2 fills the context; 0 would be no answer at all.
    return (predict if predict is not None and predict > 0 else None), seed


def _stream(body: dict[str, Any]) -> bool:
    stream = expect(body, "stream", bool, "a boolean")
    return True if stream is None else stream


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("tools: expected an array.", param="tools")
    tools = []
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"tools[{i}].function.name is required.", param="tools")
        tools.append(one_tool(function["name"], function.get("parameters")))
    return tuple(tools)


def _chat_messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidRequest("messages: expected an array of messages.", param="messages")
    out: list[dict[str, Any]] = []
    calls = 0
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise InvalidRequest(
                f"messages[{i}].role: expected one of {', '.join(_ROLES)}.", param="messages"
            )
        role = message["role"]
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content: expected a string.", param="messages")
        raw_calls = message.get("tool_calls")
        if role == "assistant" and isinstance(raw_calls, list) and raw_calls:
            tool_calls = []
            for call in raw_calls:
                function = call.get("function", {}) if isinstance(call, dict) else {}
                calls += 1
                tool_calls.append(
                    {
                        # Ollama's calls have no id: number them, for the tool results below.
                        "id": f"call_ollama_{calls}",
                        "type": "function",
                        "function": {
                            "name": str(function.get("name", "")),
                            "arguments": tool_args_json(function.get("arguments")),
                        },
                    }
                )
            out.append({"role": "assistant", "content": content or None, "tool_calls": tool_calls})
        elif role == "tool":
            name = message.get("tool_name")
            out.append({"role": "tool", "tool_call_id": _call_id_of(out, name), "content": content})
        else:
            out.append({"role": role, "content": content})
    return out


def _call_id_of(messages: list[dict[str, Any]], name: Any) -> str:
    """The id given to the latest call of the tool ``name`` (or of any tool)."""
    for message in reversed(messages):
        for call in reversed(message.get("tool_calls") or ()):
            if name is None or call["function"]["name"] == name:
                return str(call["id"])
    return ""


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body, "model is required")
    messages = _chat_messages(body.get("messages") or [])
    if not messages:
        raise InvalidRequest("messages: at least one message is required.", param="messages")
    max_tokens, seed = _options(body)
    tools = _parse_tools(body.get("tools"))
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=_stream(body),
        max_tokens=max_tokens,
        seed=seed,
        tools=tools,
    )


def parse_generate(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body, "model is required")
    prompt = expect(body, "prompt", str, "a string") or ""
    system = expect(body, "system", str, "a string")
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    max_tokens, seed = _options(body)
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=_stream(body),
        max_tokens=max_tokens,
        seed=seed,
    )


# -- the answer -------------------------------------------------------------------------------


def _final_fields(plan: Plan) -> dict[str, Any]:
    choice = plan.choices[0]
    ttft_ns = int(plan.ttft * 1e9)
    total_ns = int(max(choice.end_time, plan.ttft) * 1e9)
    return {
        "done": True,
        "done_reason": "length" if choice.finish_reason == "length" else "stop",
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_count": plan.prompt_tokens,
        "prompt_eval_duration": ttft_ns,
        "eval_count": plan.completion_tokens,
        "eval_duration": total_ns - ttft_ns,
    }


def _tool_calls(plan: Plan) -> list[dict[str, Any]]:
    call = plan.choices[0].tool_call
    assert call is not None
    return [{"function": {"name": call[1], "arguments": json.loads(call[2])}}]


class _Encoder(TokenFrameEncoder):
    separator = b"\n"
    whole_tool_call = True
    chat: ClassVar[bool]

    def __init__(self, plan: Plan, created: int):
        self.plan = plan
        self.head = dumps({"model": plan.model, "created_at": _created_at(created)})[:-1]
        if self.chat:
            self._prefix = self.head + b',"message":{"role":"assistant","content":'
            self._suffix = b'},"done":false}\n'
        else:
            self._prefix = self.head + b',"response":'
            self._suffix = b',"done":false}\n'

    def arguments(self, fragment: str) -> bytes:
        if not self.chat:
            return self.text(fragment)  # /api/generate has no tools: the arguments as text
        message = {"role": "assistant", "content": "", "tool_calls": _tool_calls(self.plan)}
        return self.head + b',"message":' + dumps(message) + b',"done":false}\n'

    def finish(self) -> bytes:
        return b""

    def end(self) -> bytes:
        empty = b',"message":{"role":"assistant","content":""}' if self.chat else b',"response":""'
        return self.head + empty + b"," + dumps(_final_fields(self.plan))[1:] + b"\n"

    def error(self) -> bytes:
        return dumps({"error": _ERROR_MESSAGE}) + b"\n"

    def shutdown(self) -> bytes:
        return _SHUTDOWN_LINE


class _ChatEncoder(_Encoder):
    chat = True


class _GenerateEncoder(_Encoder):
    chat = False


class _Ollama(Format):
    id_prefix = "ollama-"
    stream_headers = NDJSON_HEADERS
    encoder: ClassVar[type[_Encoder]]

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        encoder = self.encoder
        return event_script(plan, lambda: encoder(plan, created), _SHUTDOWN_LINE)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        choice = plan.choices[0]
        out: dict[str, Any] = {"model": plan.model, "created_at": _created_at(created)}
        if self.encoder.chat:
            message: dict[str, Any] = {"role": "assistant", "content": choice.text}
            if choice.tool_call is not None:
                message = {"role": "assistant", "content": "", "tool_calls": _tool_calls(plan)}
            out["message"] = message
        else:
            out["response"] = choice.text
        out.update(_final_fields(plan))
        return vendor_body(plan, dumps(out))

    def error(self, exc: MockError) -> tuple[int, Any]:
        if exc.code == "model_not_found":
            model = exc.message.split("`")[1] if exc.message.count("`") >= 2 else ""
            return 404, {"error": f'model "{model}" not found, try pulling it first'}
        return exc.status, {"error": exc.message}

    def status_error(self, status: int) -> Any:
        return {"error": _STATUS_MESSAGES.get(status, _ERROR_MESSAGE)}

    def headers(self, response_id: str) -> Headers:
        return [(b"x-request-id", response_id.encode())]


class OllamaChat(_Ollama):
    name = "ollama_chat"
    encoder = _ChatEncoder

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_chat(body)


class OllamaGenerate(_Ollama):
    name = "ollama_generate"
    encoder = _GenerateEncoder

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_generate(body)

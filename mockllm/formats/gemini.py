"""Gemini (``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` and
``:generateContent``): request, SSE chunks, body and errors, as ``google-genai`` sends and
parses them.

The model is in the path. A stream is ``data:`` events only (no ``event:`` line, no end
marker), each a whole ``GenerateContentResponse``: ``candidates[0].content.parts`` (``text``,
or one whole ``functionCall`` with ``args`` as an object), ``usageMetadata`` and
``modelVersion``; the last event has ``finishReason`` (``STOP``, ``MAX_TOKENS``) and the
complete token counts. Errors are ``{"error": {"code", "message", "status"}}``; a mid-stream
error is such an event (google-genai raises ``ServerError``/``ClientError`` from both).
``streamGenerateContent`` always answers SSE (google-genai always asks ``alt=sse``).
"""

from __future__ import annotations

import json
from typing import Any

from mockllm.errors import InvalidRequest, MockError
from mockllm.formats.base import (
    EventScript,
    Format,
    Headers,
    TokenFrameEncoder,
    dumps,
    event_script,
    tool_args_json,
    vendor_body,
)
from mockllm.generation import Body, Plan
from mockllm.request import ChatRequest, Tool

__all__ = ["GEMINI_PREFIXES", "Gemini", "gemini_method"]

#: the API versions served; the rest of the path is ``{model}:{method}``
GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")
_METHODS = ("generateContent", "streamGenerateContent")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota). (mockllm fault)",
    503: "The model is overloaded. Please try again later. (mockllm fault)",
}
_ERROR_MESSAGE = "An internal error has occurred. (mockllm fault)"
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def gemini_method(path: str) -> str | None:
    """``generateContent`` or ``streamGenerateContent`` if ``path`` is a Gemini model call."""
    for prefix in GEMINI_PREFIXES:
        if path.startswith(prefix):
            _, colon, method = path.rpartition(":")
            return method if colon and method in _METHODS else None
    return None


def _error(status: int, message: str) -> dict[str, Any]:
    code = _STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": code}}


def _sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\r\n\r\n"


# -- the request ------------------------------------------------------------------------------


def _model_of(path: str) -> str:
    for prefix in GEMINI_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :].rpartition(":")[0]
    return ""


def _convert(contents: Any) -> list[dict[str, Any]]:
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest(
            "* GenerateContentRequest.contents: contents is not specified", param="contents"
        )
    out: list[dict[str, Any]] = []
    calls = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise InvalidRequest(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty",
                param="contents",
            )
        role = "assistant" if content.get("role") == "model" else "user"
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                calls += 1
                tool_calls.append(
                    {
                        # Gemini's calls may have no id: number them, for the responses below.
                        "id": str(call.get("id") or f"call_gemini_{calls}"),
                        "type": "function",
                        "function": {
                            "name": str(call.get("name", "")),
                            "arguments": tool_args_json(call.get("args")),
                        },
                    }
                )
            elif isinstance(part.get("functionResponse"), dict):
                result = part["functionResponse"]
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": str(result.get("id") or _call_id(out, result.get("name"))),
                        "content": json.dumps(
                            result.get("response"), separators=(",", ":"), ensure_ascii=False
                        ),
                    }
                )
        if tool_calls:
            out.append(
                {"role": "assistant", "content": "".join(texts) or None, "tool_calls": tool_calls}
            )
        elif texts:
            out.append({"role": role, "content": "".join(texts)})
    return out


def _field(value: Any, camel: str) -> Any:
    """``value[camel]``, or its snake_case spelling (google-genai sends some fields so)."""
    if not isinstance(value, dict):
        return None
    if camel in value:
        return value[camel]
    return value.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def _call_id(messages: list[dict[str, Any]], name: Any) -> str:
    for message in reversed(messages):
        for call in reversed(message.get("tool_calls") or ()):
            if call["function"]["name"] == name:
                return str(call["id"])
    return ""


def _tools(body: dict[str, Any]) -> tuple[Tool, ...]:
    tools = []
    for tool in body.get("tools") or ():
        for declaration in _field(tool, "functionDeclarations") or ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = _field(declaration, "parametersJsonSchema") or declaration.get(
                    "parameters"
                )
                tools.append(Tool(declaration["name"], _lower_types(schema or {})))
    return tuple(tools)


def _lower_types(schema: Any) -> Any:
    """Gemini's ``parameters`` schema spells types in capitals (``OBJECT``): as JSON Schema."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _tool_choice(body: dict[str, Any], tools: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    config = _field(_field(body, "toolConfig"), "functionCallingConfig") or {}
    mode = config.get("mode") if isinstance(config, dict) else None
    if mode == "NONE":
        return "none", None
    if mode == "ANY" and tools:
        allowed = _field(config, "allowedFunctionNames") or [tools[0].name]
        return "required", str(allowed[0])
    return ("auto", None) if mode == "AUTO" else (None, None)


def parse_gemini_request(body: dict[str, Any], path: str) -> ChatRequest:
    messages = _convert(body.get("contents"))
    system = _field(body, "systemInstruction")
    if isinstance(system, dict):
        text = "".join(
            p["text"]
            for p in system.get("parts") or ()
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
        messages.insert(0, {"role": "system", "content": text})
    config = _field(body, "generationConfig") or {}
    if not isinstance(config, dict):
        raise InvalidRequest("* generationConfig: expected an object", param="generationConfig")
    max_tokens = _field(config, "maxOutputTokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InvalidRequest(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be a positive "
            "integer",
            param="generationConfig.maxOutputTokens",
        )
    seed = config.get("seed")
    tools = _tools(body)
    tool_choice, forced = _tool_choice(body, tools)
    return ChatRequest(
        model=_model_of(path),
        messages=tuple(messages),
        stream=path.endswith(":streamGenerateContent"),
        max_tokens=max_tokens,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
    )


# -- the answer -------------------------------------------------------------------------------


def _usage(plan: Plan, *, final: bool) -> dict[str, int]:
    if not final:
        return {"promptTokenCount": plan.prompt_tokens, "totalTokenCount": plan.prompt_tokens}
    return {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": plan.completion_tokens,
        "totalTokenCount": plan.prompt_tokens + plan.completion_tokens,
    }


def _function_call(plan: Plan) -> dict[str, Any]:
    call = plan.choices[0].tool_call
    assert call is not None
    return {"functionCall": {"id": call[0], "name": call[1], "args": json.loads(call[2])}}


def _response(plan: Plan, response_id: str, parts: list[Any], *, final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if final:
        candidate["finishReason"] = _FINISH.get(plan.choices[0].finish_reason, "STOP")
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(plan, final=final),
        "modelVersion": plan.model,
        "responseId": response_id,
    }


class _Encoder(TokenFrameEncoder):
    separator = b"\r\n\r\n"
    whole_tool_call = True

    def __init__(self, plan: Plan, response_id: str):
        self.plan = plan
        self.response_id = response_id
        self._prefix = b'data: {"candidates":[{"content":{"parts":[{"text":'
        tail = dumps(
            {
                "usageMetadata": _usage(plan, final=False),
                "modelVersion": plan.model,
                "responseId": response_id,
            }
        )
        self._suffix = b'}],"role":"model"},"index":0}],' + tail[1:] + b"\r\n\r\n"

    def arguments(self, fragment: str) -> bytes:
        response = _response(self.plan, self.response_id, [_function_call(self.plan)], final=False)
        return _sse(dumps(response))

    def finish(self) -> bytes:
        return b""

    def end(self) -> bytes:
        return _sse(dumps(_response(self.plan, self.response_id, [{"text": ""}], final=True)))

    def error(self) -> bytes:
        return _sse(dumps(_error(500, _ERROR_MESSAGE)))

    def shutdown(self) -> bytes:
        return SHUTDOWN_EVENT


SHUTDOWN_EVENT = _sse(
    dumps(_error(503, "The server is shutting down; this stream ended early. Retry the request."))
)


class Gemini(Format):
    name = "gemini"
    id_prefix = "gemini-"

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_gemini_request(body, path)

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        response_id = self.response_id(plan.completion_id)
        return event_script(plan, lambda: _Encoder(plan, response_id), SHUTDOWN_EVENT)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        choice = plan.choices[0]
        parts = [_function_call(plan)] if choice.tool_call is not None else [{"text": choice.text}]
        response = _response(plan, self.response_id(plan.completion_id), parts, final=True)
        return vendor_body(plan, dumps(response))

    def error(self, exc: MockError) -> tuple[int, Any]:
        return exc.status, _error(exc.status, exc.message)

    def status_error(self, status: int) -> Any:
        return _error(status, _FAULT_MESSAGES.get(status, _ERROR_MESSAGE))

    def headers(self, response_id: str) -> Headers:
        return [(b"x-request-id", response_id.encode())]

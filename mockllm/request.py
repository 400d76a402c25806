"""Validation of a Chat Completions request body into a frozen :class:`ChatRequest`.

Error messages and ``code`` values follow what the OpenAI API answers for the same mistakes
(``missing_required_parameter``, ``invalid_type``, ``integer_below_min_value``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockllm.errors import InvalidJSON, InvalidRequest
from mockllm.strictjson import parse_json

__all__ = [
    "ChatRequest",
    "Tool",
    "last_user_text",
    "message_text",
    "parse_body",
    "parse_chat_request",
]

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_MAX_N = 128


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: Any


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[dict[str, Any], ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    n: int = 1
    seed: int | None = None
    tools: tuple[Tool, ...] = ()
    # None (not given), "none", "auto", "required", or the forced function's name.
    tool_choice: str | None = None
    forced_tool: str | None = None

    @property
    def last_user_text(self) -> str:
        return last_user_text(self.messages)


def last_user_text(messages: tuple[dict[str, Any], ...]) -> str:
    """The text of the last user message (the prompt rules match), or ``""``."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose ``content`` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def parse_body(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body (strictly: :func:`~mockllm.strictjson.parse_json`)."""
    try:
        body = parse_json(raw)
    except InvalidJSON as exc:
        if not exc.syntax:
            raise
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    return body


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _int_field(body: dict[str, Any], name: str, minimum: int, maximum: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(name, "an integer", value)
    if value < minimum:
        raise InvalidRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise InvalidRequest(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def _parse_messages(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(value, list):
        raise _wrong_type("messages", "an array", value)
    if not value:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.role'.",
                param=f"{where}.role",
                code="missing_required_parameter",
            )
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequest(
                f"Invalid value: {role!r}. Supported values are: "
                + ", ".join(f"'{r}'" for r in sorted(_ROLES))
                + ".",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _wrong_type(f"{where}.content", "a string or an array", content)
    return tuple(value)


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _wrong_type("tools", "an array", value)
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "an object", tool)
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise InvalidRequest(
                f"Invalid '{where}': expected {{'type': 'function', 'function': {{...}}}}.",
                param=where,
                code="invalid_value",
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.function.name'.",
                param=f"{where}.function.name",
                code="missing_required_parameter",
            )
        tools.append(Tool(name, function.get("parameters", {})))
    return tuple(tools)


def _parse_tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: 'none', 'auto', and 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
        if value == "required" and not tools:
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                "'tools' are specified.",
                param="tool_choice",
            )
        return value, tools[0].name if value == "required" else None
    if isinstance(value, dict):
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest(
                "Missing required parameter: 'tool_choice.function.name'.",
                param="tool_choice.function.name",
                code="missing_required_parameter",
            )
        if name not in {tool.name for tool in tools}:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': function '{name}' is not among 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        return "function", name
    raise _wrong_type("tool_choice", "a string or an object", value)


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    messages = _parse_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        usage = options.get("include_usage", False)
        if not isinstance(usage, bool):
            raise _wrong_type("stream_options.include_usage", "a boolean", usage)
        include_usage = usage
    max_tokens = _int_field(body, "max_completion_tokens", 1, None)
    legacy = _int_field(body, "max_tokens", 1, None)
    if max_tokens is None:
        max_tokens = legacy
    n = _int_field(body, "n", 1, _MAX_N) or 1
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _wrong_type("seed", "an integer", seed)
    tools = _parse_tools(body.get("tools"))
    tool_choice, forced = _parse_tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        n=n,
        seed=seed,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
    )

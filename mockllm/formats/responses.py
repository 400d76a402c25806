"""OpenAI Responses (``POST /v1/responses``): request, stream events, body.

Shapes follow the ``openai`` SDK's types (``openai/types/responses``) and WIRE_FORMATS.md
section 2: every event has an ``event:`` line equal to its ``type`` and a ``sequence_number``
counting from 0 without gaps; ``response.created`` comes first and ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut the answer) last; no ``[DONE]``. Text
is a ``message`` item with one ``output_text`` part (``response.output_text.delta``); a tool
call is a ``function_call`` item (``response.function_call_arguments.delta``). A mid-stream
error is an ``error`` event (the SDK yields it as ``ResponseErrorEvent``). Errors and status
faults have OpenAI's error shape, as for Chat Completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mockllm.errors import InvalidRequest
from mockllm.formats.base import (
    EventScript,
    OpenAIFormat,
    dumps,
    event_script,
    expect,
    one_tool,
    positive_int,
    required_model,
    tool_args_json,
    vendor_body,
)
from mockllm.formats.openai_chat import escape_text
from mockllm.generation import Body, Plan
from mockllm.request import ChatRequest, Tool

__all__ = ["OpenAIResponses"]

_ROLES = ("user", "system", "developer", "assistant")
_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
_SHUTDOWN_MESSAGE = "The server is shutting down; this stream ended early. Retry the request."


def _event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


# -- the request ------------------------------------------------------------------------------


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise InvalidRequest(
        f"Invalid type for '{where}': expected a string or an array of content parts.",
        param=where,
        code="invalid_type",
    )


def _input_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest(
            "Invalid type for 'input': expected a string or an array of input items.",
            param="input",
            code="invalid_type",
        )
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(
                f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type"
            )
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise InvalidRequest(
                    f"Invalid value for '{where}.role': expected one of "
                    + ", ".join(f"'{r}'" for r in _ROLES)
                    + ".",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            out.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {
                    "name": str(item.get("name", "")),
                    "arguments": tool_args_json(item.get("arguments")),
                },
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": output if isinstance(output, str) else _text(output, where),
                }
            )
        # Other items (reasoning, web search calls, ...) carry nothing the answer depends on.
    return out


def _parse_tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(
            "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type"
        )
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise InvalidRequest(
                f"Invalid type for 'tools[{i}]': expected an object.",
                param=f"tools[{i}]",
                code="invalid_type",
            )
        if tool.get("type") != "function":
            continue  # built-in tools (web_search, ...) are never called by the mock
        if not isinstance(tool.get("name"), str):
            raise InvalidRequest(
                f"Missing required parameter: 'tools[{i}].name'.",
                param=f"tools[{i}].name",
                code="missing_required_parameter",
            )
        tools.append(one_tool(tool["name"], tool.get("parameters")))
    return tuple(tools)


def _parse_tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if value in ("none", "auto"):
        return value, None
    if value == "required":
        if not tools:
            raise InvalidRequest(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                param="tool_choice",
            )
        return "required", tools[0].name
    name = value.get("name") if isinstance(value, dict) else None
    if isinstance(name, str) and name in {t.name for t in tools}:
        return "function", name
    raise InvalidRequest(
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
        "{'type': 'function', 'name': ...} naming one of 'tools'.",
        param="tool_choice",
        code="invalid_value",
    )


def parse_responses_request(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body)
    raw_input = body.get("input")
    if raw_input is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    messages = _input_messages(raw_input)
    instructions = expect(body, "instructions", str, "a string")
    if instructions is not None:
        messages.insert(0, {"role": "system", "content": instructions})
    if not messages:
        raise InvalidRequest("Invalid 'input': empty array.", param="input", code="empty_array")
    tools = _parse_tools(body.get("tools"))
    tool_choice, forced = _parse_tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=expect(body, "stream", bool, "a boolean") or False,
        max_tokens=positive_int(body, "max_output_tokens"),
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
    )


# -- the answer -------------------------------------------------------------------------------


class _Ids:
    def __init__(self, chat_id: str):
        rest = chat_id.removeprefix("chatcmpl-")
        self.response = "resp_" + rest
        self.message = "msg_" + rest
        self.function = "fc_" + rest


def _usage(plan: Plan) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _response(
    plan: Plan, body: dict[str, Any], created: int, ids: _Ids, status: str, output: list[Any]
) -> dict[str, Any]:
    incomplete = status == "incomplete"
    return {
        "id": ids.response,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": _usage(plan) if status != "in_progress" else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _final_status(plan: Plan) -> str:
    return "incomplete" if plan.choices[0].finish_reason == "length" else "completed"


def _item(plan: Plan, ids: _Ids, status: str, *, done: bool) -> dict[str, Any]:
    choice = plan.choices[0]
    if choice.tool_call is not None:
        call_id, name, arguments = choice.tool_call
        return {
            "id": ids.function,
            "type": "function_call",
            "status": status,
            "arguments": arguments if done else "",
            "call_id": call_id,
            "name": name,
        }
    return {
        "id": ids.message,
        "type": "message",
        "status": status,
        "content": [_part(choice.text)] if done else [],
        "role": "assistant",
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


class _Encoder:
    whole_tool_call = False

    def __init__(self, plan: Plan, body: dict[str, Any], created: int):
        self.plan = plan
        self.body = body
        self.created = created
        self.ids = _Ids(plan.completion_id)
        self.seq = 0
        tool = plan.choices[0].tool_call is not None
        item_id = self.ids.function if tool else self.ids.message
        if tool:
            self._delta_prefix = _event(
                "response.function_call_arguments.delta",
                b'{"type":"response.function_call_arguments.delta","item_id":"'
                + item_id.encode()
                + b'","output_index":0,"delta":',
            )[:-2]
            self._delta_suffix = b',"sequence_number":'
        else:
            self._delta_prefix = _event(
                "response.output_text.delta",
                b'{"type":"response.output_text.delta","item_id":"'
                + item_id.encode()
                + b'","output_index":0,"content_index":0,"delta":',
            )[:-2]
            self._delta_suffix = b',"logprobs":[],"sequence_number":'

    def _next(self, name: str, payload: dict[str, Any]) -> bytes:
        data = {"type": name, **payload, "sequence_number": self.seq}
        self.seq += 1
        return _event(name, dumps(data))

    def start(self) -> bytes:
        plan, ids = self.plan, self.ids
        in_progress = _response(plan, self.body, self.created, ids, "in_progress", [])
        out = self._next("response.created", {"response": in_progress})
        out += self._next("response.in_progress", {"response": in_progress})
        item = _item(plan, ids, "in_progress", done=False)
        out += self._next("response.output_item.added", {"output_index": 0, "item": item})
        if plan.choices[0].tool_call is None:
            out += self._next(
                "response.content_part.added",
                {
                    "item_id": ids.message,
                    "output_index": 0,
                    "content_index": 0,
                    "part": _part(""),
                },
            )
        return out

    def _delta(self, text: str) -> bytes:
        seq = self.seq
        self.seq += 1
        return (
            self._delta_prefix
            + escape_text(text)
            + self._delta_suffix
            + str(seq).encode()
            + b"}\n\n"
        )

    def text(self, text: str) -> bytes:
        return self._delta(text)

    def run(self, texts: Sequence[str], tool: bool) -> bytes:
        prefix, suffix, seq = self._delta_prefix, self._delta_suffix, self.seq
        self.seq += len(texts)
        return b"".join(
            [
                prefix + escape_text(text) + suffix + str(n).encode() + b"}\n\n"
                for n, text in enumerate(texts, seq)
            ]
        )

    def arguments(self, fragment: str) -> bytes:
        return self._delta(fragment)

    def finish(self) -> bytes:
        plan, ids = self.plan, self.ids
        choice = plan.choices[0]
        if choice.tool_call is not None:
            out = self._next(
                "response.function_call_arguments.done",
                {"item_id": ids.function, "output_index": 0, "arguments": choice.tool_call[2]},
            )
        else:
            text = choice.text
            where = {"item_id": ids.message, "output_index": 0, "content_index": 0}
            out = self._next("response.output_text.done", {**where, "text": text, "logprobs": []})
            out += self._next("response.content_part.done", {**where, "part": _part(text)})
        item = _item(plan, ids, _final_status(plan), done=True)
        out += self._next("response.output_item.done", {"output_index": 0, "item": item})
        return out

    def end(self) -> bytes:
        plan, ids = self.plan, self.ids
        status = _final_status(plan)
        item = _item(plan, ids, status, done=True)
        response = _response(plan, self.body, self.created, ids, status, [item])
        return self._next(f"response.{status}", {"response": response})

    def error(self) -> bytes:
        return self._next(
            "error", {"code": "server_error", "message": _ERROR_MESSAGE, "param": None}
        )

    def malformed(self) -> bytes:
        whole = self._delta("garbled")
        return whole[: len(whole) // 2] + b"\n\n"

    def shutdown(self) -> bytes:
        return self._next(
            "error", {"code": "server_shutdown", "message": _SHUTDOWN_MESSAGE, "param": None}
        )


# Written by respond.py after the last event it wrote; its sequence number cannot be known
# there, so it carries none (the SDK's ResponseErrorEvent then has sequence_number None).
SHUTDOWN_EVENT = _event(
    "error",
    dumps(
        {"type": "error", "code": "server_shutdown", "message": _SHUTDOWN_MESSAGE, "param": None}
    ),
)


class OpenAIResponses(OpenAIFormat):
    name = "openai_responses"
    id_prefix = "resp_"

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_responses_request(body)

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        return event_script(plan, lambda: _Encoder(plan, body, created), SHUTDOWN_EVENT)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        ids = _Ids(plan.completion_id)
        status = _final_status(plan)
        item = _item(plan, ids, status, done=True)
        return vendor_body(plan, dumps(_response(plan, body, created, ids, status, [item])))

"""OpenAI legacy Completions (``POST /v1/completions``): request, stream chunks, body.

Shapes follow WIRE_FORMATS.md section 1.6 and ``openai/types/completion.py``: every chunk is
``"object":"text_completion"`` with ``choices[{text, index, logprobs, finish_reason}]``; the
finish chunk has empty text and the ``finish_reason``; with ``stream_options.include_usage``
a usage chunk with ``"choices":[]``; then ``data: [DONE]``. Errors, the mid-stream error event
and status faults have OpenAI's shape, as for Chat Completions. The prompt is answered as a
chat request whose one user message is the prompt (the same prompt and seed give the same text
as Chat Completions).
"""

from __future__ import annotations

from typing import Any

from mockllm.errors import InvalidRequest
from mockllm.formats.base import (
    EventScript,
    OpenAIFormat,
    TokenFrameEncoder,
    dumps,
    event_script,
    expect,
    positive_int,
    required_model,
    vendor_body,
)
from mockllm.formats.openai_chat import SHUTDOWN_EVENT, ChunkEncoder, escape_text
from mockllm.generation import Body, Plan
from mockllm.request import ChatRequest
from mockllm.sse import DATA, DONE, END

__all__ = ["Completions"]

_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "Invalid 'prompt': mockllm answers one prompt string per request (a list of one "
            "string is accepted); send token arrays or several prompts as separate requests.",
            param="prompt",
            code="invalid_value",
        )
    return prompt


def parse_completions_request(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body)
    prompt = _prompt(body)
    stream = expect(body, "stream", bool, "a boolean") or False
    options = expect(body, "stream_options", dict, "an object")
    if options is not None and not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    n = positive_int(body, "n")
    if n is not None and n > 1:
        raise InvalidRequest(
            "Invalid 'n': mockllm's completions answer one choice (n=1).",
            param="n",
            code="invalid_value",
        )
    seed = expect(body, "seed", int, "an integer")
    return ChatRequest(
        model=model,
        messages=({"role": "user", "content": prompt},),
        stream=stream,
        include_usage=bool(options and options.get("include_usage") is True),
        max_tokens=positive_int(body, "max_tokens"),
        seed=seed,
    )


def _usage(plan: Plan) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _cmpl_id(chat_id: str) -> str:
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


class _Encoder(TokenFrameEncoder):
    separator = END
    whole_tool_call = False

    def __init__(self, plan: Plan, created: int, include_usage: bool):
        self.plan = plan
        self.include_usage = include_usage
        self.head = (
            DATA
            + dumps(
                {
                    "id": _cmpl_id(plan.completion_id),
                    "object": "text_completion",
                    "created": created,
                    "model": plan.model,
                }
            )[:-1]
            + b',"choices":'
        )
        self._prefix = self.head + b'[{"text":'
        self._suffix = b',"index":0,"logprobs":null,"finish_reason":null}]}' + END

    # A tool control on a completion writes the arguments as text (completions have no tools).
    def arguments(self, fragment: str) -> bytes:
        return self.text(fragment)

    def finish(self) -> bytes:
        reason = self.plan.choices[0].finish_reason
        out = (
            self.head
            + b'[{"text":"","index":0,"logprobs":null,"finish_reason":'
            + escape_text("stop" if reason == "tool_calls" else reason)
            + b"}]}"
            + END
        )
        if self.include_usage:
            out += self.head + b'[],"usage":' + dumps(_usage(self.plan)) + b"}" + END
        return out

    def end(self) -> bytes:
        return DONE

    def error(self) -> bytes:
        return ChunkEncoder.error(_ERROR_MESSAGE)

    def shutdown(self) -> bytes:
        return SHUTDOWN_EVENT


class Completions(OpenAIFormat):
    name = "openai_completions"
    id_prefix = "cmpl-"

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_completions_request(body)

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        return event_script(plan, lambda: _Encoder(plan, created, usage), SHUTDOWN_EVENT)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        choice = plan.choices[0]
        reason = choice.finish_reason
        data = dumps(
            {
                "id": _cmpl_id(plan.completion_id),
                "object": "text_completion",
                "created": created,
                "model": plan.model,
                "system_fingerprint": "fp_mockllm",
                "choices": [
                    {
                        "text": choice.tool_call[2] if choice.tool_call else choice.text,
                        "index": 0,
                        "logprobs": None,
                        "finish_reason": "stop" if reason == "tool_calls" else reason,
                    }
                ],
                "usage": _usage(plan),
            }
        )
        return vendor_body(plan, data)

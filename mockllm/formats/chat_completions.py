"""OpenAI Chat Completions (``POST /v1/chat/completions``) as a format (``formats/base.py``).

The stream and body are ``generation.py``'s own (:func:`~mockllm.generation.stream_script`,
:func:`~mockllm.generation.body_script`, bytes from ``openai_chat.py``): the chat hot path,
unchanged, behind the interface every other format implements.
"""

from __future__ import annotations

from typing import Any

from mockllm.errors import MockError, fault_body
from mockllm.formats.base import OPENAI_HEADERS, Format, Headers
from mockllm.generation import Body, Plan, Script, body_script, stream_script
from mockllm.request import ChatRequest, parse_chat_request

__all__ = ["CHAT", "ChatCompletions"]


class ChatCompletions(Format):
    name = "openai_chat"

    def response_id(self, chat_id: str) -> str:
        return chat_id

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_chat_request(body)

    def chat_stream(self, plan: Plan, request: ChatRequest, created: int) -> Script:
        return stream_script(plan, created=created, include_usage=request.include_usage)

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        return body_script(plan, created=created)

    def error(self, exc: MockError) -> tuple[int, Any]:
        return exc.status, exc.body()

    def status_error(self, status: int) -> Any:
        return fault_body(status)

    def headers(self, response_id: str) -> Headers:
        return [(b"x-request-id", response_id.encode()), *OPENAI_HEADERS]


CHAT = ChatCompletions()

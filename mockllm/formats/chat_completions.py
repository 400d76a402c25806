"""OpenAI Chat Completions (``POST /v1/chat/completions``) as a format (``formats/base.py``).

Its stream and body are ``generation.py``'s own (:func:`~mockllm.generation.stream_script`,
:func:`~mockllm.generation.body_script`, bytes from ``openai_chat.py``), which ``chat.build``
calls directly: the chat hot path (several choices interleaved, runs of chunks joined) is
unchanged. This class gives the chat the rest of the interface: parsing, ids, errors, headers.
"""

from __future__ import annotations

from typing import Any

from mockllm.formats.base import OpenAIFormat
from mockllm.request import ChatRequest, parse_chat_request

__all__ = ["CHAT", "ChatCompletions"]


class ChatCompletions(OpenAIFormat):
    name = "openai_chat"

    def response_id(self, chat_id: str) -> str:
        return chat_id

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_chat_request(body)


CHAT = ChatCompletions()

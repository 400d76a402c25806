"""OpenAI Chat Completions: chunk, completion and error bytes, exactly as the SDK parses them.

Field order and shapes follow responses recorded from the live API (see WIRE_FORMATS.md 1.1):
every chunk carries the same ``id`` and ``created``; the first delta of a text answer is
``{"role":"assistant","content":"","refusal":null}``; a tool call's first fragment carries
``id``, ``type`` and ``function.name``; the finish chunk has ``"delta":{}``; the usage chunk
has ``"choices":[]``. Content chunks are built by concatenating pre-encoded byte pieces,
because this is the hot path of every stream.

On a token's way this is where a token becomes bytes: ``generation.py`` asks it for the events
of a :class:`~mockllm.generation.Script`, each a one-line SSE ``data:`` event (the framing of
``sse.py``), which the chat handler then writes unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from mockllm.errors import error_body
from mockllm.sse import DATA, DONE, END, encode

__all__ = ["SHUTDOWN_EVENT", "ChunkEncoder", "completion_body", "escape_text", "usage_body"]

SYSTEM_FINGERPRINT = "fp_mockllm"

_CONTENT_SUFFIX = b'},"logprobs":null,"finish_reason":null}]}' + END
_ARGS_SUFFIX = b'}}]},"logprobs":null,"finish_reason":null}]}' + END

# JSON-escaped token text, shared by every stream: tokens repeat a lot across answers.
_ESCAPED: dict[str, bytes] = {}
_ESCAPED_MAX = 200_000


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _json_text(text: str) -> bytes:
    """``_json(text)``; a printable ASCII string without a quote or backslash (our ids)
    needs no escaping, only its quotes."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return b'"' + text.encode() + b'"'
    return _json(text)


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class ChunkEncoder:
    """Encodes the SSE events of one streamed completion."""

    def __init__(self, completion_id: str, created: int, model: str):
        self.head = (
            DATA
            + b'{"id":'
            + _json_text(completion_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + self._escape(model)
            + b',"system_fingerprint":"'
            + SYSTEM_FINGERPRINT.encode()
            + b'","choices":'
        )
        self._content_prefix: dict[int, bytes] = {}
        self._args_prefix: dict[int, bytes] = {}

    def _choice(self, index: int, delta: bytes, finish: bytes = b"null") -> bytes:
        return (
            self.head
            + b'[{"index":'
            + str(index).encode()
            + b',"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + finish
            + b"}]}"
            + END
        )

    @staticmethod
    def _escape(text: str) -> bytes:
        escaped = _ESCAPED.get(text)
        if escaped is None:
            escaped = _json(text)
            if len(_ESCAPED) < _ESCAPED_MAX:
                _ESCAPED[text] = escaped
        return escaped

    def role(self, index: int) -> bytes:
        return self._choice(index, b'{"role":"assistant","content":"","refusal":null}')

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        delta = _json(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
        )
        return self._choice(index, delta)

    def _prefix(self, index: int, tool: bool) -> bytes:
        cache = self._args_prefix if tool else self._content_prefix
        prefix = cache.get(index)
        if prefix is None:
            delta = (
                b',"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
                if tool
                else b',"delta":{"content":'
            )
            prefix = cache[index] = self.head + b'[{"index":' + str(index).encode() + delta
        return prefix

    def content(self, index: int, text: str) -> bytes:
        return self._prefix(index, False) + self._escape(text) + _CONTENT_SUFFIX

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        return self._prefix(index, True) + self._escape(fragment) + _ARGS_SUFFIX

    def many(self, index: int, texts: Iterable[str], *, tool: bool = False) -> list[bytes]:
        """``content`` (or ``tool_arguments``) of each text: the per-token hot path."""
        prefix = self._prefix(index, tool)
        suffix = _ARGS_SUFFIX if tool else _CONTENT_SUFFIX
        cached = _ESCAPED.get
        escape = self._escape
        return [prefix + (cached(text) or escape(text)) + suffix for text in texts]

    def run(
        self,
        index: int,
        texts: Sequence[str],
        *,
        tool: bool = False,
        head: bytes = b"",
        tail: bytes = b"",
    ) -> bytes:
        """``head + b"".join(self.many(index, texts, tool=tool)) + tail`` (non-empty
        ``texts``), in one join: the events of a run written together differ only in their
        token, so the run is their tokens joined by what lies between two of them."""
        prefix = self._prefix(index, tool)
        suffix = _ARGS_SUFFIX if tool else _CONTENT_SUFFIX
        cached = _ESCAPED.get
        escape = self._escape
        parts = [cached(t) or escape(t) for t in texts]
        parts[0] = head + prefix + parts[0]
        parts[-1] += suffix + tail
        return (suffix + prefix).join(parts)

    def finish(self, index: int, reason: str) -> bytes:
        return self._choice(index, b"{}", self._escape(reason))

    def usage(self, usage: dict[str, Any]) -> bytes:
        return self.head + b'[],"usage":' + _json(usage) + b"}" + END

    def malformed(self, index: int) -> bytes:
        """A chunk cut off mid-JSON: the SDK raises ``json.JSONDecodeError`` on it."""
        whole = self.content(index, "garbled")
        return whole[: len(whole) // 2] + END

    @staticmethod
    def error(message: str, error_type: str = "server_error", code: str | None = None) -> bytes:
        return encode(_json(error_body(message, error_type, code=code)))

    done = DONE


#: The last event of a stream that a server shutdown (SIGTERM) ends early: OpenAI's error event,
#: as ``error_after`` writes it, with its own code; the body then ends without ``[DONE]``.
SHUTDOWN_EVENT: bytes = ChunkEncoder.error(
    "The server is shutting down; this stream ended early. Retry the request.",
    "server_error",
    code="server_shutdown",
)


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
) -> bytes:
    """A non-streamed ``chat.completion``. Each choice: index, text or tool call, finish."""
    out_choices = []
    for choice in choices:
        message: dict[str, Any] = {"role": "assistant", "content": choice.get("text")}
        if choice.get("tool_call") is not None:
            call_id, name, arguments = choice["tool_call"]
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
        message["refusal"] = None
        message["annotations"] = []
        out_choices.append(
            {
                "index": choice["index"],
                "message": message,
                "logprobs": None,
                "finish_reason": choice["finish_reason"],
            }
        )
    return _json(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": out_choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    )


def escape_text(text: str) -> bytes:
    """A token's JSON string, from the cache every stream shares (the other formats too)."""
    return ChunkEncoder._escape(text)

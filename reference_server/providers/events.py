"""What every provider adapter turns its stream into: the server's internal upstream events.

A provider's decoder (``openai_chat.py``, ``anthropic.py``, ``ollama.py``) yields tokens,
tool-call fragments and exactly one finish, in the OpenAI chat vocabulary the v1 protocol
speaks (``finish_reason`` ``stop``/``length``/``tool_calls``, usage ``prompt_tokens``,
``completion_tokens``, ``total_tokens``), so that a client cannot tell which provider answered.
A provider's error, mid-stream or a stream cut short, is an :class:`UpstreamError`. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from reference_server.errors import UpstreamError

T = TypeVar("T")

__all__ = [
    "StreamDecoder",
    "UpstreamEvent",
    "UpstreamFinish",
    "UpstreamToken",
    "UpstreamToolCall",
    "decode_each",
    "usage_of",
]


@dataclass(frozen=True)
class UpstreamToken:
    content: str


@dataclass(frozen=True)
class UpstreamToolCall:
    """One fragment of a tool call: the first carries ``call_id`` and ``name`` (when the
    provider gives them), later ones more of the ``arguments`` JSON text."""

    call_index: int
    call_id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class UpstreamFinish:
    finish_reason: str | None
    usage: dict[str, Any] | None


UpstreamEvent = UpstreamToken | UpstreamToolCall | UpstreamFinish


class StreamDecoder(Protocol):
    """A streamed response's body bytes in, :data:`UpstreamEvent` out, in any split.

    ``feed`` returns the events its bytes completed; once the provider said the answer is
    complete, that ends with the :class:`UpstreamFinish` and ``done`` turns true (later bytes
    are ignored). A provider's error (or bytes that do not parse) sets ``error`` and ends
    decoding; the events before it in the same bytes are still returned, because they are part
    of the answer the client sees. ``end`` is for the body's end before ``done``: the last
    events and the finish, or the error of a stream cut short.
    """

    done: bool
    error: UpstreamError | None

    def feed(self, data: bytes) -> list[UpstreamEvent]: ...
    def end(self) -> list[UpstreamEvent]: ...


def decode_each(
    items: Iterable[T], decode: Callable[[T, list[UpstreamEvent]], bool]
) -> tuple[list[UpstreamEvent], UpstreamError | None]:
    """Feed ``items`` (events or lines) to ``decode`` until it says the stream ended; the
    events it produced, and the error that stopped it (the decoder keeps it for ``end``)."""
    events: list[UpstreamEvent] = []
    try:
        for item in items:
            if decode(item, events):
                break
    except UpstreamError as exc:
        return events, exc
    return events, None


def usage_of(prompt: Any, completion: Any) -> dict[str, Any] | None:
    """Token counts in the v1 protocol's usage shape, or None when the provider gave none."""
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }

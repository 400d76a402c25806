"""What every wire format provides, and the pieces the formats other than Chat Completions share.

A format is pure (no I/O): it turns its vendor's request body into the one internal
:class:`~mockllm.request.ChatRequest` (OpenAI-chat-shaped messages, a tool result as a
``{"role": "tool", "tool_call_id": ...}`` message, so that rules, controls, directives and the
seeded content work unchanged), encodes a :class:`~mockllm.generation.Plan` as that vendor's
stream or body, and shapes errors the way that vendor's SDK parses them. The app picks the
format by method and path (``routes.py``); the chat handler (``chat.py``) does the rest.

:class:`EventScript` plays a plan through an :class:`EventEncoder` with the same fault actions
and outcomes as the chat stream's :class:`~mockllm.generation.Script`; :func:`vendor_body`
applies the faults of a non-streamed answer to a format's body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mockllm.errors import InvalidRequest, MockError, fault_body
from mockllm.formats.openai_chat import escape_text
from mockllm.generation import Action, Body, Event, Plan, chunk_ranges, first_cut, slices
from mockllm.lazyseq import Repeat
from mockllm.request import ChatRequest, Tool

__all__ = [
    "NDJSON_HEADERS",
    "OPENAI_HEADERS",
    "SSE_HEADERS",
    "EventEncoder",
    "EventScript",
    "Format",
    "OpenAIFormat",
    "TokenFrameEncoder",
    "dumps",
    "expect",
    "vendor_body",
]

Headers = list[tuple[bytes, bytes]]

SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx buffers a proxied response unless told not to (docs/stack.md, nginx settings).
    (b"x-accel-buffering", b"no"),
]
# OpenAI's rate-limit headers, on every answer of an OpenAI format.
OPENAI_HEADERS: Headers = [
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-limit-tokens", b"30000000"),
    (b"x-ratelimit-remaining-tokens", b"29999000"),
    (b"x-ratelimit-reset-tokens", b"2ms"),
]
NDJSON_HEADERS: Headers = [
    (b"content-type", b"application/x-ndjson"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

# What a fault's status is called in the error messages of every format.
FAULT_MESSAGE = "The server had an error while processing your request (mockllm fault)."


def dumps(value: Any) -> bytes:
    """Compact JSON, non-ASCII kept as UTF-8 (what the vendors send)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def expect(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``body[name]`` if present and of ``kind`` (None if absent); raises InvalidRequest."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidRequest(f"{name}: expected {what}.", param=name, code="invalid_type")
    return value


def required_model(
    body: dict[str, Any], missing: str = "Missing required parameter: 'model'."
) -> str:
    """The body's ``model``; ``missing`` is the vendor's message when there is none."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest(missing, param="model", code="missing_required_parameter")
    if not isinstance(model, str):
        raise InvalidRequest("model: expected a string.", param="model", code="invalid_type")
    return model


def positive_int(body: dict[str, Any], name: str) -> int | None:
    value: int | None = expect(body, name, int, "an integer")
    if value is not None and value < 1:
        raise InvalidRequest(
            f"{name}: expected an integer >= 1, got {value}.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def tool_args_json(value: Any) -> str:
    """Tool-call arguments as OpenAI's JSON string (vendors that send an object)."""
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, separators=(",", ":"))


class Format:
    """One provider API. Subclasses set the names and implement parse/stream/body/errors."""

    #: what the ledger records as the entry's ``format``
    name: ClassVar[str]
    #: the prefix of the ids of this format's answers (the ledger id is the answer's id)
    id_prefix: ClassVar[str] = "chatcmpl-"
    #: the framing headers of a streamed answer
    stream_headers: ClassVar[Headers] = SSE_HEADERS
    #: False for an answer that is no generated text (embeddings): the ledger then records
    #: the body's usage and no finish reason
    generates_text: ClassVar[bool] = True

    def response_id(self, chat_id: str) -> str:
        """The answer's id in this format, from the chat completion id (same hash and count)."""
        return self.id_prefix + chat_id.removeprefix("chatcmpl-")

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        raise NotImplementedError

    def stream(self, plan: Plan, body: dict[str, Any], created: int) -> EventScript:
        raise NotImplementedError

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        raise NotImplementedError

    def build_in_thread(self, body: dict[str, Any]) -> bool:
        """Whether the answer to ``body`` costs enough to be built in a worker thread."""
        return False

    def error(self, exc: MockError) -> tuple[int, Any]:
        """The status and JSON payload of an error answer."""
        return exc.status, exc.body()

    def status_error(self, status: int) -> Any:
        """The JSON payload of a ``status=N`` fault's answer."""
        raise NotImplementedError

    def headers(self, response_id: str) -> Headers:
        """Headers of every answer besides the framing (a request id, rate limits)."""
        return [(b"x-request-id", response_id.encode())]


class OpenAIFormat(Format):
    """A format of OpenAI's API: OpenAI's error shape and rate-limit headers."""

    def status_error(self, status: int) -> Any:
        return fault_body(status)

    def headers(self, response_id: str) -> Headers:
        return [(b"x-request-id", response_id.encode()), *OPENAI_HEADERS]


class EventEncoder(Protocol):
    """The bytes of one streamed answer's events, in order (it may count them)."""

    #: a tool call is sent whole (its arguments an object), not in fragments
    whole_tool_call: bool

    def start(self) -> bytes:
        """What precedes the first token (may be empty)."""
        ...

    def text(self, text: str) -> bytes: ...

    def arguments(self, fragment: str) -> bytes:
        """A fragment of a tool call's arguments (or, with ``whole_tool_call``, all of them)."""
        ...

    def run(self, texts: Sequence[str], tool: bool) -> bytes:
        """``b"".join(text(t) for t in texts)`` (or ``arguments``), in one join: the events of
        tokens due together differ only in their token (not called for a whole tool call)."""
        ...

    def finish(self) -> bytes:
        """Everything after the last token but the end marker."""
        ...

    def end(self) -> bytes:
        """The end marker (what ``no_done`` leaves out); may be empty."""
        ...

    def error(self) -> bytes:
        """The vendor's mid-stream error event (``error_after``)."""
        ...

    def malformed(self) -> bytes:
        """An event cut off mid-JSON (``malformed_after``)."""
        ...

    def shutdown(self) -> bytes:
        """The last event of a stream a server shutdown ends."""
        ...


@dataclass(frozen=True)
class EventScript:
    """A streamed answer of one choice in a vendor format: what the chat stream's
    :class:`~mockllm.generation.Script` gives ``respond.write_stream``, built when iterated."""

    plan: Plan
    encoder: Any  # a callable making a fresh EventEncoder for each play
    outcome: str
    split_pause: float
    tokens: Sequence[str]
    shutdown: bytes = b""

    def events(self) -> Iterator[Event]:
        """Every event in order, one at a time, faults applied."""
        return self._play(runs=False)

    def writes(self) -> Iterator[Event]:
        """The same bytes and due times, the events of tokens due at the same time joined into
        one item where no fault needs them apart (what ``respond.write_stream`` plays)."""
        return self._play(runs=True)

    def _play(self, *, runs: bool) -> Iterator[Event]:
        plan = self.plan
        enc: EventEncoder = self.encoder()
        choice = plan.choices[0]
        faults = plan.control.faults
        cut_at, cut_kind = first_cut(faults)
        split = faults.split_chunk
        tool = choice.tool_call is not None
        tokens = choice.tokens
        write = Action.WRITE
        size = max(1, plan.control.timing.tokens_per_chunk)
        if (
            runs
            and tokens
            and size == 1
            and cut_at is None
            and split is None
            and not (tool and enc.whole_tool_call)
        ):
            yield from self._runs(enc, tool)
            return
        head = enc.start()
        sent = 0
        last_due = plan.ttft
        cut = False
        if tool and enc.whole_tool_call:
            count = len(tokens)
            items: Iterator[tuple[float, int, int]] = iter(
                [(choice.end_time if count else plan.ttft, 0, count)] if count else []
            )
        else:
            items = chunk_ranges(choice, size, plan.ttft)
        for due, start, stop in items:
            if stop == start:
                continue
            if cut_at is not None and sent >= cut_at:
                cut = True
                break
            ntok = stop - start
            piece = tokens[start] if ntok == 1 else "".join(tokens[start:stop])
            data = enc.arguments(piece) if tool else enc.text(piece)
            if head:
                data, head = head + data, b""
            if split is not None and (split == -1 or sent <= split < sent + ntok):
                yield due, data, ntok, Action.SPLIT
            else:
                yield due, data, ntok, write
            sent += ntok
            last_due = due
        if not cut and cut_at is not None and sent >= cut_at:
            cut = True
        if cut:
            if head:
                yield last_due, head, 0, write
            if cut_kind == "abort_after":
                yield last_due, b"", 0, Action.ABORT
            elif cut_kind == "malformed_after":
                yield last_due, enc.malformed(), 0, write
            elif cut_kind == "error_after":
                yield last_due, enc.error(), 0, write
            return  # truncate_after: the body just ends here
        tail = head + enc.finish()
        if not faults.no_done:
            tail += enc.end()
        yield last_due, tail, 0, write

    def _runs(self, enc: EventEncoder, tool: bool) -> Iterator[Event]:
        """The events of a stream without a cut or split fault, one token per event, those
        of a slice due at the same time joined (chat's ``generation._choice_runs``)."""
        plan = self.plan
        choice = plan.choices[0]
        tokens, times = choice.tokens, choice.times
        one = enc.arguments if tool else enc.text
        write = Action.WRITE
        head = enc.start()
        # Every token due at once (`instant`): no due time to look at.
        same = isinstance(times, Repeat)
        due = plan.ttft
        for c0, c1 in slices(len(tokens)):
            dues = [times[0]] if same else times[c0:c1]
            if dues[0] == dues[-1]:
                due = dues[0]
                yield due, head + enc.run(tokens[c0:c1], tool), c1 - c0, write
                head = b""
                continue
            for due, text in zip(dues, tokens[c0:c1], strict=True):
                yield due, head + one(text), 1, write
                head = b""
        tail = enc.finish()
        if not plan.control.faults.no_done:
            tail += enc.end()
        yield due, tail, 0, write


def joined(prefix: bytes, texts: Sequence[str], suffix: bytes) -> bytes:
    """``b"".join(prefix + escape_text(t) + suffix for t in texts)`` in one join."""
    return prefix + (suffix + prefix).join([escape_text(t) for t in texts]) + suffix


class TokenFrameEncoder:
    """The shared part of the encoders whose token event is ``_prefix`` + the token as a JSON
    string + ``_suffix`` (completions, Ollama, Gemini): nothing before the first token, the
    events of a run joined in one go, and a malformed event cut off mid-JSON and closed with
    the format's own event separator so the client's framing still sees one event."""

    _prefix: bytes
    _suffix: bytes
    #: what ends one event of the format (an SSE blank line, an NDJSON newline)
    separator: ClassVar[bytes]

    def start(self) -> bytes:
        return b""

    def text(self, text: str) -> bytes:
        return self._prefix + escape_text(text) + self._suffix

    def run(self, texts: Sequence[str], tool: bool) -> bytes:
        return joined(self._prefix, texts, self._suffix)

    def malformed(self) -> bytes:
        whole = self.text("garbled")
        return whole[: len(whole) // 2] + self.separator


def stream_outcome(plan: Plan) -> str:
    faults = plan.control.faults
    cut_at, cut_kind = first_cut(faults)
    if cut_at is not None and plan.completion_tokens >= cut_at:
        return f"fault:{cut_kind}"
    return "fault:no_done" if faults.no_done else "completed"


def event_script(plan: Plan, encoder: Any, shutdown: bytes) -> EventScript:
    """An :class:`EventScript` of ``plan`` (one choice) through ``encoder()``."""
    faults = plan.control.faults
    return EventScript(
        plan,
        encoder,
        stream_outcome(plan),
        faults.split_pause_ms / 1000.0,
        plan.choices[0].tokens,
        shutdown,
    )


def vendor_body(plan: Plan, data: bytes) -> Body:
    """A non-streamed answer whose bytes are ``data``, the body faults applied as for chat."""
    due = max((c.end_time for c in plan.choices), default=plan.ttft)
    faults = plan.control.faults
    written = [token for c in plan.choices for token in c.tokens]
    if faults.abort_after is not None:
        return Body((due, data, 0, Action.ABORT), "fault:abort_after", written)
    if faults.malformed_after is not None:
        return Body(
            (due, data[: len(data) // 2], 0, Action.WRITE), "fault:malformed_after", written
        )
    return Body((due, data, plan.completion_tokens, Action.WRITE), "completed", written)


def one_tool(name: str, parameters: Any) -> Tool:
    return Tool(name, parameters if parameters is not None else {})

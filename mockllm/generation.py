"""From a validated request and its control to what gets written, and when (pure).

:func:`build_plan` decides the answer (tokens, finish reason, tool call) and the schedule of
every choice; the tokens and due times of a generated answer are made only as they are read
(:class:`~mockllm.lazyseq.LazyList`), so deciding costs the same for 10 tokens or 100,000.
:func:`stream_script` turns a plan into a :class:`Script`: the exact SSE byte events of the
stream, each with its due time and the fault action that applies, built when iterated, a
slice ahead of the schedule. The I/O layer only has to wait and write:

- :meth:`Script.events` gives the events one by one (the reference);
- :meth:`Script.writes` gives the same bytes at the same due times, with a run of events that
  are due at the same moment joined into one item (a whole ``instant`` answer is a handful of
  items), so that what is due together goes out in one write.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from mockllm.content import derive_seed, lorem_answer, tool_arguments
from mockllm.control import Control
from mockllm.conversation import answered_tool
from mockllm.formats.openai_chat import (
    SHUTDOWN_EVENT,
    ChunkEncoder,
    completion_body,
    usage_body,
)
from mockllm.lazyseq import LazyList, Repeat, float_store
from mockllm.profiles import DEFAULT_TOKENS
from mockllm.request import ChatRequest, message_text
from mockllm.schedule import EvenTimes, token_time_blocks
from mockllm.tokenizer import count_tokens, tokenize

__all__ = [
    "Action",
    "Body",
    "ChoicePlan",
    "Event",
    "Plan",
    "Script",
    "base_seed",
    "body_script",
    "build_plan",
    "chunk_ranges",
    "completion_id",
    "first_cut",
    "slices",
    "stream_script",
    "tokens_built_up_front",
]


@dataclass(frozen=True)
class ChoicePlan:
    index: int
    # Made when first read (lazyseq.LazyList) for a generated answer.
    tokens: Sequence[str]
    times: Sequence[float]
    finish_reason: str
    # (call id, function name, complete arguments) when the answer is a tool call; its
    # argument fragments are then the tokens.
    tool_call: tuple[str, str, str] | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def end_time(self) -> float:
        return self.times[-1] if self.times else 0.0


@dataclass(frozen=True)
class Plan:
    completion_id: str
    model: str
    choices: tuple[ChoicePlan, ...]
    prompt_tokens: int
    completion_tokens: int
    control: Control
    ttft: float

    @property
    def usage(self) -> dict[str, Any]:
        return usage_body(self.prompt_tokens, self.completion_tokens)


class Action(IntEnum):
    WRITE = 0
    SPLIT = 1  # write in two TCP writes with a pause between them
    ABORT = 2  # drop the connection without finishing the response


# (due seconds from the start, bytes, tokens carried, action)
Event = tuple[float, bytes, int, Action]
# A choice's chunk before it has bytes: (due, first token, end token)
_Chunk = tuple[float, int, int]

# Chunks are built this many at a time, a slice ahead of the one being written: small first
# (the first byte waits for the first slice only), larger once the stream runs. 256 chunks
# of ~250 bytes keep a joined write near 64 KiB.
_FIRST_SLICE = 16
_SLICE = 256


def _prompt_tokens(messages: tuple[dict[str, Any], ...]) -> int:
    # Roughly OpenAI's accounting: a few tokens of framing per message plus the reply primer.
    return sum(_text_tokens(message_text(m)) + 4 for m in messages) + 3


def _text_tokens(text: str) -> int:
    if len(text) > _COUNTED_TEXT_MAX:
        return count_tokens(text)
    return _counted(text)


# Counts of recent short message texts (the same prompts, over and over, under load).
_COUNTED_TEXT_MAX = 4096
_counted = functools.lru_cache(maxsize=1024)(count_tokens)


def base_seed(
    request: ChatRequest,
    control: Control,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
) -> int:
    """The seed every choice's content and timing derive from (a hash of the prompt)."""
    request_seed = control.seed if control.seed is not None else request.seed
    tools = [(t.name, t.parameters) for t in request.tools]
    return derive_seed(server_seed, request_seed, list(messages), tools)


# The ledger entry takes the id before the answer is built, the plan again after: one hash.
@functools.lru_cache(maxsize=1024)
def _completion_id(base: int, sequence: int) -> str:
    return f"chatcmpl-{derive_seed(base, sequence):016x}{sequence:06d}"


# A load test asks the same prompts again and again: their choices' seeds are asked again too.
@functools.lru_cache(maxsize=4096)
def _choice_seed(base: int, index: int) -> int:
    return derive_seed(base, index)


def completion_id(
    request: ChatRequest,
    control: Control,
    *,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
    sequence: int,
    base: int | None = None,
) -> str:
    """The id :func:`build_plan` gives this request (known before the answer is built)."""
    if base is None:
        base = base_seed(request, control, messages, server_seed)
    return _completion_id(base, sequence)


def tokens_built_up_front(request: ChatRequest, control: Control, prompt: str) -> int:
    """About how many tokens :func:`build_plan` and the script make before the first byte
    (to decide where to build them): a generated stream makes its tokens as it goes."""
    if control.text is not None:
        per_choice = len(control.text) // 3
    elif control.mode == "echo":
        per_choice = len(prompt) // 3
    elif request.stream:
        return 0
    else:
        per_choice = DEFAULT_TOKENS if control.tokens is None else control.tokens
    if request.max_tokens is not None:
        per_choice = min(per_choice, request.max_tokens)
    return per_choice * request.n


def build_plan(
    request: ChatRequest,
    control: Control,
    *,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
    sequence: int,
    base: int | None = None,
) -> Plan:
    """Decide the whole answer. ``messages`` are the request's with directives stripped;
    ``base`` is :func:`base_seed` when the caller has it already."""
    tools = [(t.name, t.parameters) for t in request.tools]
    if base is None:
        base = base_seed(request, control, messages, server_seed)
    tool_name = control.tool
    if tool_name is not None and not control.tool_repeat and answered_tool(tool_name, messages):
        # An agent loop has run the call and sent its result: it wants the answer now, or it
        # would call again until its turn limit (``tool_repeat`` asks for that).
        tool_name = None
    if tool_name is None and request.tool_choice != "none":
        tool_name = request.forced_tool
    faults = control.faults
    timing = control.timing
    stalls = faults.stall_after is not None and faults.stall_seconds > 0
    choices = []
    for index in range(request.n):
        seed = _choice_seed(base, index)
        tool_call: tuple[str, str, str] | None = None
        tokens: Sequence[str]
        if tool_name is not None:
            parameters: Any = next((p for n, p in tools if n == tool_name), {})
            arguments = control.tool_arguments or tool_arguments(seed, parameters)
            call_id = f"call_{derive_seed(seed, 'call'):016x}"
            tool_call = (call_id, tool_name, arguments)
            tokens = tokenize(arguments)
            finish = "tool_calls"
        elif control.text is not None:
            tokens, finish = tokenize(control.text), "stop"
        elif control.mode == "echo":
            last_user = next(
                (message_text(m) for m in reversed(messages) if m.get("role") == "user"), ""
            )
            tokens, finish = tokenize(last_user), "stop"
        else:
            count = DEFAULT_TOKENS if control.tokens is None else control.tokens
            finish = "stop"
            if request.max_tokens is not None and count > request.max_tokens:
                count, finish = request.max_tokens, "length"
            tokens = lorem_answer(seed, count)
        if request.max_tokens is not None and len(tokens) > request.max_tokens:
            tokens, finish = tokens[: request.max_tokens], "length"
        times: Sequence[float]
        if not timing.jitter_ms and not timing.itl_ms and not stalls:
            # Every token at the TTFT (`instant`): what token_time_blocks would give, once.
            times = Repeat((timing.ttft_ms + 0.0) / 1000.0, len(tokens))
        elif not timing.jitter_ms:
            times = EvenTimes(
                len(tokens),
                timing,
                stall_after=faults.stall_after,
                stall_seconds=faults.stall_seconds,
            )
        else:
            # Only jitter draws from the timing RNG: without it there is nothing to seed.
            rng = random.Random(derive_seed(seed, "timing")) if timing.jitter_ms else None
            blocks = token_time_blocks(
                len(tokens),
                timing,
                rng,
                stall_after=faults.stall_after,
                stall_seconds=faults.stall_seconds,
            )
            times = LazyList(len(tokens), blocks, float_store())
        choices.append(ChoicePlan(index, tokens, times, finish, tool_call))
    return Plan(
        completion_id=_completion_id(base, sequence),
        model=request.model,
        choices=tuple(choices),
        prompt_tokens=_prompt_tokens(messages),
        completion_tokens=sum(len(c.tokens) for c in choices),
        control=control,
        ttft=timing.ttft_ms / 1000.0,
    )


# -- streams ---------------------------------------------------------------------------------


def _slices(count: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` ranges over ``count`` chunks: one small slice, then larger ones."""
    start, size = 0, _FIRST_SLICE
    while start < count:
        stop = min(start + size, count)
        yield start, stop
        start, size = stop, _SLICE


def _chunks(choice: ChoicePlan, size: int, ttft: float) -> Iterator[_Chunk]:
    """Each chunk of a choice: its due time (its last token's) and its token range. A choice
    without tokens is one chunk at the TTFT (its first event and its finish together)."""
    tokens, times = choice.tokens, choice.times
    count = len(tokens)
    if count == 0:
        yield ttft, 0, 0
        return
    nchunks = -(-count // size)
    for c0, c1 in _slices(nchunks):
        if size == 1:
            yield from zip(times[c0:c1], range(c0, c1), range(c0 + 1, c1 + 1), strict=True)
        else:
            for c in range(c0, c1):
                end = min(c * size + size, count)
                yield times[end - 1], c * size, end


def _choice_events(
    choice: ChoicePlan, enc: ChunkEncoder, size: int, ttft: float
) -> Iterator[tuple[float, bytes, int]]:
    """(due, bytes, tokens) of each event of one choice, one event at a time."""
    tool = choice.tool_call is not None
    first = (
        enc.tool_call_start(choice.index, *choice.tool_call[:2])
        if choice.tool_call is not None
        else enc.role(choice.index)
    )
    finish = enc.finish(choice.index, choice.finish_reason)
    tokens = choice.tokens
    if not tokens:
        yield ttft, first + finish, 0
        return
    content = enc.tool_arguments if tool else enc.content
    index = choice.index
    last = len(tokens)
    for due, start, end in _chunks(choice, size, ttft):
        data = content(index, tokens[start] if end - start == 1 else "".join(tokens[start:end]))
        if start == 0:
            data = first + data
        if end == last:
            data += finish
        yield due, data, end - start


def _choice_runs(
    choice: ChoicePlan, enc: ChunkEncoder, size: int, ttft: float
) -> Iterator[tuple[float, bytes, int]]:
    """:func:`_choice_events`, but the events of a slice that are all due at the same time
    come as one item, their bytes joined (the same bytes)."""
    tokens, times = choice.tokens, choice.times
    count = len(tokens)
    if count == 0 or size != 1:
        yield from _choice_events(choice, enc, size, ttft)
        return
    tool = choice.tool_call is not None
    index = choice.index
    first = (
        enc.tool_call_start(index, *choice.tool_call[:2])
        if choice.tool_call is not None
        else enc.role(index)
    )
    finish = enc.finish(index, choice.finish_reason)
    content = enc.tool_arguments if tool else enc.content
    # Every token due at once (`instant`): no due time to look at.
    same = isinstance(times, Repeat)
    for c0, c1 in _slices(count):
        dues = [times[0]] if same else times[c0:c1]
        texts = tokens[c0:c1]
        if dues[0] == dues[-1]:
            head = first if c0 == 0 else b""
            tail = finish if c1 == count else b""
            yield dues[0], enc.run(index, texts, tool=tool, head=head, tail=tail), c1 - c0
            continue
        for i, (due, text) in enumerate(zip(dues, texts, strict=True), c0):
            data = content(index, text)
            if i == 0:
                data = first + data
            if i == count - 1:
                data += finish
            yield due, data, 1


def _merged(plan: Plan, enc: ChunkEncoder, runs: bool) -> Iterator[tuple[float, bytes, int]]:
    size = plan.control.timing.tokens_per_chunk
    size = max(1, size)
    make = _choice_runs if runs else _choice_events
    streams = [make(choice, enc, size, plan.ttft) for choice in plan.choices]
    if len(streams) == 1:
        return streams[0]
    # n > 1: the choices interleave by due time; on a tie the lower choice index goes first.
    return heapq.merge(*streams, key=lambda item: item[0])


def _written_blocks(plan: Plan) -> Iterator[Sequence[str]]:
    """The answer's tokens in write order (choices interleaved as their events are)."""
    size = max(1, plan.control.timing.tokens_per_chunk)

    def tagged(choice: ChoicePlan) -> Iterator[tuple[float, ChoicePlan, int, int]]:
        for due, start, end in _chunks(choice, size, plan.ttft):
            yield due, choice, start, end

    streams = [tagged(choice) for choice in plan.choices]
    for _, choice, start, end in heapq.merge(*streams, key=lambda item: item[0]):
        yield choice.tokens[start:end] if end > start else []


def _first_cut(faults: Any) -> tuple[int | None, str | None]:
    cut_at, cut_kind = None, None
    for kind in ("abort_after", "truncate_after", "malformed_after", "error_after"):
        value = getattr(faults, kind)
        if value is not None and (cut_at is None or value < cut_at):
            cut_at, cut_kind = value, kind
    return cut_at, cut_kind


# For the other formats' scripts (formats/base.py).
chunk_ranges = _chunks
first_cut = _first_cut
slices = _slices

_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class Script:
    """A streamed answer: its events, built when iterated, and what is known up front."""

    plan: Plan
    created: int
    include_usage: bool
    outcome: str  # what the ledger records when the script ran to its end
    split_pause: float
    # The answer's tokens in write order (choices interleaved as their events are).
    tokens: Sequence[str]
    # The format's last event for a stream ended early by a server shutdown (respond.py).
    shutdown: bytes = SHUTDOWN_EVENT

    def events(self) -> Iterator[Event]:
        """Every event in order, one at a time, faults applied."""
        return self._play(runs=False)

    def writes(self) -> Iterator[Event]:
        """The same bytes and due times as :meth:`events`, a run of events due at the same
        time joined into one item where no fault needs them apart."""
        return self._play(runs=True)

    def _play(self, *, runs: bool) -> Iterator[Event]:
        plan = self.plan
        enc = ChunkEncoder(plan.completion_id, self.created, plan.model)
        faults = plan.control.faults
        cut_at, cut_kind = _first_cut(faults)
        split = faults.split_chunk
        # A fault that counts tokens needs the events one by one.
        content = _merged(plan, enc, runs and cut_at is None and split is None)
        write, split_action = Action.WRITE, Action.SPLIT
        sent = 0
        last_due = 0.0
        cut = False
        for due, data, ntok in content:
            if cut_at is not None and sent >= cut_at:
                cut = True
                break
            if split is not None and (split == -1 or sent <= split < sent + max(ntok, 1)):
                yield due, data, ntok, split_action
            else:
                yield due, data, ntok, write
            sent += ntok
            last_due = due
        if not cut and cut_at is not None and sent >= cut_at:
            cut = True
        if cut:
            if cut_kind == "abort_after":
                yield last_due, b"", 0, Action.ABORT
            elif cut_kind == "truncate_after":
                pass  # the body just ends here, cleanly: no finish chunk, no [DONE]
            elif cut_kind == "malformed_after":
                yield last_due, enc.malformed(0), 0, write
            else:
                yield last_due, enc.error(_ERROR_MESSAGE), 0, write
            return
        tail = b""
        if self.include_usage:
            tail += enc.usage(plan.usage)
        if not faults.no_done:
            tail += enc.done
        if tail:
            yield last_due, tail, 0, write


def stream_script(plan: Plan, *, created: int, include_usage: bool) -> Script:
    """The SSE events of a streamed answer, faults applied (built when iterated)."""
    faults = plan.control.faults
    cut_at, cut_kind = _first_cut(faults)
    if cut_at is not None and plan.completion_tokens >= cut_at:
        outcome = f"fault:{cut_kind}"
    else:
        outcome = "fault:no_done" if faults.no_done else "completed"
    tokens: Sequence[str]
    if len(plan.choices) == 1:
        tokens = plan.choices[0].tokens
    else:
        tokens = LazyList(plan.completion_tokens, _written_blocks(plan))
    return Script(plan, created, include_usage, outcome, faults.split_pause_ms / 1000.0, tokens)


# -- non-streamed answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A non-streamed answer: one event, its body written whole when the last token is due."""

    event: Event
    outcome: str
    tokens: Sequence[str]
    # The ledger's usage when the answer is not generated text (embeddings); else the plan's.
    usage: dict[str, Any] | None = None


def body_script(plan: Plan, *, created: int) -> Body:
    """A non-streamed answer: one body written when the last token is due."""
    due = max((c.end_time for c in plan.choices), default=plan.ttft)
    faults = plan.control.faults
    written = [token for c in plan.choices for token in c.tokens]
    body = completion_body(
        completion_id=plan.completion_id,
        created=created,
        model=plan.model,
        choices=[
            {
                "index": c.index,
                "text": None if c.tool_call else c.text,
                "tool_call": c.tool_call,
                "finish_reason": c.finish_reason,
            }
            for c in plan.choices
        ],
        usage=plan.usage,
    )
    if faults.abort_after is not None:
        # The I/O layer announces the whole body, writes half of it, then drops the connection.
        return Body((due, body, 0, Action.ABORT), "fault:abort_after", written)
    if faults.malformed_after is not None:
        return Body(
            (due, body[: len(body) // 2], 0, Action.WRITE), "fault:malformed_after", written
        )
    return Body((due, body, plan.completion_tokens, Action.WRITE), "completed", written)

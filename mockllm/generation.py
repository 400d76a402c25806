"""From a validated request and its control to what gets written, and when (pure).

:func:`build_plan` decides the answer (tokens, finish reason, tool call) and the schedule of
every choice. :func:`stream_script` turns a plan into the exact SSE byte events of a stream,
each with its due time and the fault action that applies, so the I/O layer only has to wait
and write.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from mockllm.content import derive_seed, lorem_tokens, tool_arguments
from mockllm.control import Control
from mockllm.formats.openai_chat import (
    SHUTDOWN_EVENT,
    ChunkEncoder,
    completion_body,
    usage_body,
)
from mockllm.profiles import DEFAULT_TOKENS
from mockllm.request import ChatRequest, message_text
from mockllm.schedule import chunk_bounds, token_times
from mockllm.tokenizer import count_tokens, tokenize

__all__ = [
    "Action",
    "ChoicePlan",
    "Plan",
    "Script",
    "body_script",
    "build_plan",
    "completion_id",
    "estimated_tokens",
    "stream_script",
]


@dataclass(frozen=True)
class ChoicePlan:
    index: int
    tokens: tuple[str, ...]
    times: tuple[float, ...]
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


@dataclass(frozen=True)
class Script:
    events: tuple[Event, ...]
    outcome: str  # what the ledger records when the script ran to its end
    split_pause: float = 0.0
    # The answer's tokens in write order (choices interleaved as their events are).
    tokens: tuple[str, ...] = ()
    # The format's last event for a stream ended early by a server shutdown (respond.py).
    shutdown: bytes = b""


def _prompt_tokens(messages: tuple[dict[str, Any], ...]) -> int:
    # Roughly OpenAI's accounting: a few tokens of framing per message plus the reply primer.
    return sum(count_tokens(message_text(m)) + 4 for m in messages) + 3


def _base_seed(
    request: ChatRequest,
    control: Control,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
) -> int:
    request_seed = control.seed if control.seed is not None else request.seed
    tools = [(t.name, t.parameters) for t in request.tools]
    return derive_seed(server_seed, request_seed, list(messages), tools)


def _completion_id(base: int, sequence: int) -> str:
    return f"chatcmpl-{derive_seed(base, sequence):016x}{sequence:06d}"


def completion_id(
    request: ChatRequest,
    control: Control,
    *,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
    sequence: int,
) -> str:
    """The id :func:`build_plan` gives this request (known before the answer is built)."""
    return _completion_id(_base_seed(request, control, messages, server_seed), sequence)


def estimated_tokens(request: ChatRequest, control: Control, prompt: str) -> int:
    """About how many tokens :func:`build_plan` will produce (to decide where to build it)."""
    if request.max_tokens is not None:
        per_choice = request.max_tokens
    elif control.text is not None:
        per_choice = len(control.text) // 3
    elif control.mode == "echo":
        per_choice = len(prompt) // 3
    else:
        per_choice = DEFAULT_TOKENS if control.tokens is None else control.tokens
    return per_choice * request.n


def build_plan(
    request: ChatRequest,
    control: Control,
    *,
    messages: tuple[dict[str, Any], ...],
    server_seed: int,
    sequence: int,
) -> Plan:
    """Decide the whole answer. ``messages`` are the request's with directives stripped."""
    tools = [(t.name, t.parameters) for t in request.tools]
    base = _base_seed(request, control, messages, server_seed)
    completion_id = _completion_id(base, sequence)
    tool_name = control.tool
    if tool_name is None and request.tool_choice != "none":
        tool_name = request.forced_tool
    choices = []
    for index in range(request.n):
        seed = derive_seed(base, index)
        tool_call: tuple[str, str, str] | None = None
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
            tokens, finish = lorem_tokens(seed, count), "stop"
        if request.max_tokens is not None and len(tokens) > request.max_tokens:
            tokens, finish = tokens[: request.max_tokens], "length"
        times = token_times(
            len(tokens),
            control.timing,
            random.Random(derive_seed(seed, "timing")),
            stall_after=control.faults.stall_after,
            stall_seconds=control.faults.stall_seconds,
        )
        choices.append(ChoicePlan(index, tuple(tokens), tuple(times), finish, tool_call))
    return Plan(
        completion_id=completion_id,
        model=request.model,
        choices=tuple(choices),
        prompt_tokens=_prompt_tokens(messages),
        completion_tokens=sum(len(c.tokens) for c in choices),
        control=control,
        ttft=control.timing.ttft_ms / 1000.0,
    )


def stream_script(plan: Plan, *, created: int, include_usage: bool) -> Script:
    """The SSE events of a streamed answer, faults applied."""
    enc = ChunkEncoder(plan.completion_id, created, plan.model)
    per_choice: list[tuple[Event, tuple[str, ...]]] = []
    size = plan.control.timing.tokens_per_chunk
    for choice in plan.choices:
        tool = choice.tool_call is not None
        first = (
            enc.tool_call_start(choice.index, *choice.tool_call[:2])
            if choice.tool_call is not None
            else enc.role(choice.index)
        )
        bounds = chunk_bounds(len(choice.tokens), size)
        if not bounds:
            data = first + enc.finish(choice.index, choice.finish_reason)
            per_choice.append(((plan.ttft, data, 0, Action.WRITE), ()))
            continue
        if size == 1:
            # One token per chunk (the common case): no slicing or joining per token.
            texts: list[str] = list(choice.tokens)
            groups: list[tuple[str, ...]] = [(t,) for t in choice.tokens]
            dues = list(choice.times)
        else:
            groups = [choice.tokens[start:end] for start, end in bounds]
            texts = ["".join(group) for group in groups]
            dues = [choice.times[end - 1] for _, end in bounds]
        datas = enc.many(choice.index, texts, tool=tool)
        datas[0] = first + datas[0]
        datas[-1] += enc.finish(choice.index, choice.finish_reason)
        per_choice.extend(
            ((due, data, len(group), Action.WRITE), group)
            for due, data, group in zip(dues, datas, groups, strict=True)
        )
    if len(plan.choices) == 1:
        ordered = per_choice
    else:
        # Stable sort: ties keep choice order, so n>1 streams interleave by due time.
        ordered = sorted(per_choice, key=lambda item: item[0][0])
    content = [event for event, _ in ordered]
    written = [token for _, tokens in ordered for token in tokens]

    faults = plan.control.faults
    shutdown = SHUTDOWN_EVENT
    cut_at, cut_kind = None, None
    for kind in ("abort_after", "truncate_after", "malformed_after", "error_after"):
        value = getattr(faults, kind)
        if value is not None and (cut_at is None or value < cut_at):
            cut_at, cut_kind = value, kind

    events: list[Event] = []
    sent = 0
    outcome = "fault:no_done" if faults.no_done else "completed"
    last_due = 0.0
    cut = False
    if cut_at is None and faults.split_chunk is None:
        # Nothing to cut or split: the content events go out as they are.
        events = content
        last_due = content[-1][0] if content else 0.0
        content = []
    for due, data, ntok, action in content:
        if cut_at is not None and sent >= cut_at:
            cut = True
            break
        if faults.split_chunk is not None and (
            faults.split_chunk == -1 or sent <= faults.split_chunk < sent + max(ntok, 1)
        ):
            action = Action.SPLIT
        events.append((due, data, ntok, action))
        sent += ntok
        last_due = due
    if not cut and cut_at is not None and sent >= cut_at:
        cut = True
    if cut:
        assert cut_kind is not None
        outcome = f"fault:{cut_kind}"
        if cut_kind == "abort_after":
            events.append((last_due, b"", 0, Action.ABORT))
        elif cut_kind == "truncate_after":
            pass  # the body just ends here, cleanly: no finish chunk, no [DONE]
        elif cut_kind == "malformed_after":
            events.append((last_due, enc.malformed(0), 0, Action.WRITE))
        else:
            message = "The server had an error while processing your request. Sorry about that!"
            events.append((last_due, enc.error(message), 0, Action.WRITE))
        return Script(
            tuple(events), outcome, faults.split_pause_ms / 1000.0, tuple(written), shutdown
        )

    tail = b""
    if include_usage:
        tail += enc.usage(plan.usage)
    if not faults.no_done:
        tail += enc.done
    if tail:
        events.append((last_due, tail, 0, Action.WRITE))
    return Script(tuple(events), outcome, faults.split_pause_ms / 1000.0, tuple(written), shutdown)


def body_script(plan: Plan, *, created: int) -> Script:
    """A non-streamed answer: one body written when the last token is due."""
    due = max((c.end_time for c in plan.choices), default=plan.ttft)
    faults = plan.control.faults
    written = tuple(token for c in plan.choices for token in c.tokens)
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
        return Script(((due, body, 0, Action.ABORT),), "fault:abort_after", tokens=written)
    if faults.malformed_after is not None:
        return Script(
            ((due, body[: len(body) // 2], 0, Action.WRITE),),
            "fault:malformed_after",
            tokens=written,
        )
    return Script(((due, body, plan.completion_tokens, Action.WRITE),), "completed", tokens=written)

"""Writing a built answer to the client: the stream loop, the non-streamed body, status faults.

On a token's way this is the last step in the mock: the :class:`~mockllm.generation.Script`
gives every event's bytes and due time (built as the stream plays), so a stream here only
waits and calls ``send`` (SSE out): once for all the events due at the same moment (within
the timers' millisecond), the end of the body with the last of them. It applies the fault
action the script names (split an event, abort the connection) and records in the ledger
when the first token left and how many did.

A server shutdown cancels the writing task with the message :data:`SHUTDOWN` (``app.drain``):
a stream then writes the script's ``shutdown`` event (its format's error event) and ends its
body cleanly; an answer whose headers are not out yet gets a 503 instead (``chat.py``). The
ledger records ``server_shutdown``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from mockllm.asgi import JSON_HEADER, Headers, Message, Send, send_bytes, send_json
from mockllm.errors import fault_body
from mockllm.formats.base import OPENAI_HEADERS, SSE_HEADERS
from mockllm.generation import Action, Body, Event
from mockllm.ledger import Entry, Ledger
from mockllm.sse import split_event

__all__ = [
    "COMMON_HEADERS",
    "SHUTDOWN",
    "SSE_HEADERS",
    "AbortConnection",
    "StreamScript",
    "is_shutdown",
    "status_fault",
    "uncancel_current",
    "wait_until",
    "write_body",
    "write_stream",
]


class AbortConnection(Exception):
    """Raised by the app to make uvicorn drop the connection mid-response (abort fault)."""


#: The cancel message of a shutdown (``task.cancel(SHUTDOWN)``), which a writer ends cleanly,
#: unlike a client's disconnect or uvicorn's own cancellation.
SHUTDOWN = "mockllm: server shutdown"


def is_shutdown(exc: asyncio.CancelledError) -> bool:
    return exc.args[:1] == (SHUTDOWN,)


COMMON_HEADERS = OPENAI_HEADERS


class StreamScript(Protocol):
    """What :func:`write_stream` plays: a chat :class:`~mockllm.generation.Script` or another
    format's :class:`~mockllm.formats.base.EventScript`."""

    @property
    def outcome(self) -> str: ...

    @property
    def split_pause(self) -> float: ...

    @property
    def shutdown(self) -> bytes: ...

    def writes(self) -> Iterator[Event]: ...


# Events due within this of the first of them go out in one write with it: uvloop's timers
# (and epoll's waits) count whole milliseconds, so a wake-up between them would not be sooner.
_TOGETHER_S = 0.001
# A run of events due at once is written in pieces of about this size, the loop free to run
# other streams in between (an `instant` answer of 100,000 tokens must not hold it alone).
_WRITE_MAX = 64 * 1024


async def wait_until(due: float, start: float | None = None) -> None:
    """Sleep until ``due`` seconds after ``start`` (now by default) on the loop's clock."""
    loop = asyncio.get_running_loop()
    delay = (loop.time() if start is None else start) + due - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def status_fault(
    send: Send,
    ledger: Ledger,
    entry: Entry,
    status: int,
    retry_after: float | None,
    headers: Headers,
    kind: str = "status",
    payload: Any = None,
) -> None:
    """An error status instead of the answer (the ``status`` and ``error_after`` faults), its
    body ``payload`` (the format's error shape; OpenAI's by default); the ledger records it as
    ``fault:<kind>``."""
    extra = list(headers)
    if retry_after is not None:
        extra.append((b"retry-after", f"{retry_after:g}".encode()))
    entry.status = status
    ledger.end(entry, f"fault:{kind}")
    await send_json(send, status, fault_body(status) if payload is None else payload, extra)


async def write_body(
    send: Send, ledger: Ledger, entry: Entry, script: Body, headers: Headers
) -> None:
    """A non-streamed answer: one event, written whole (or half of it, then an abort)."""
    due, data, ntok, action = script.event
    await wait_until(due)
    if action is Action.ABORT:
        ledger.end(entry, script.outcome)
        out = [JSON_HEADER, (b"content-length", str(len(data)).encode()), *headers]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        half = data[: len(data) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise AbortConnection
    entry.first_token_at = time.time()
    entry.tokens_sent = len(entry.tokens) if ntok else 0
    ledger.end(entry, script.outcome)
    await send_bytes(send, 200, data, headers)


async def write_stream(
    send: Send,
    ledger: Ledger,
    entry: Entry,
    script: StreamScript,
    headers: Headers,
    watch: Callable[[], None] = lambda: None,
    framing: Headers = SSE_HEADERS,
) -> None:
    """A streamed answer: the script's events at their due times, what is due together in
    one ``send``. ``watch()`` is called before the stream first waits (the chat handler then
    starts watching for the client leaving). ``framing``: the content type of the format's
    stream and the headers that keep proxies from buffering it."""
    await send({"type": "http.response.start", "status": 200, "headers": framing + headers})
    loop = asyncio.get_running_loop()
    clock = loop.time
    sleep = asyncio.sleep
    # Every event is due relative to this instant, so lateness never accumulates.
    start = clock()
    # One message object for the whole stream: uvicorn reads it synchronously inside
    # send(), and not allocating a dict per write keeps the collector quiet.
    message: Message = {"type": "http.response.body", "body": b"", "more_body": True}
    # Events due now, not sent yet: their bytes, size and tokens.
    due_now: list[bytes] = []
    size = 0
    tokens = 0
    # The second half of a split event while its first half is out (a shutdown completes it).
    pending = b""
    # The due time of the first event in due_now: the ones due within _TOGETHER_S of it (or
    # already late) join it; the first of a group is never written before it is due.
    group_due = 0.0
    together, write_max, write = _TOGETHER_S, _WRITE_MAX, Action.WRITE  # once per token
    try:
        for due, data, ntok, action in script.writes():
            if due_now and (
                size + len(data) > write_max
                or (due - group_due > together and start + due > clock())
            ):
                message["body"] = b"".join(due_now) if len(due_now) > 1 else due_now[0]
                await send(message)
                _sent(entry, tokens)
                full = size + len(data) > write_max
                due_now, size, tokens = [], 0, 0
                if full:
                    # More is due at once: let other streams have the loop between writes.
                    watch()
                    await sleep(0)
            if not due_now:
                delay = start + due - clock()
                if delay > 0:
                    watch()
                    await sleep(delay)
                group_due = due
            if action is write:
                due_now.append(data)
                size += len(data)
                tokens += ntok
                continue
            if due_now:
                message["body"] = b"".join(due_now)
                await send(message)
                _sent(entry, tokens)
                due_now, size, tokens = [], 0, 0
            if action is Action.SPLIT:
                head, pending = split_event(data)
                await send({"type": "http.response.body", "body": head, "more_body": True})
                watch()
                await sleep(script.split_pause)
                await send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = b""
                _sent(entry, ntok)
            else:
                ledger.end(entry, script.outcome)
                raise AbortConnection
    except asyncio.CancelledError as exc:
        if not is_shutdown(exc) or entry.outcome is not None:
            raise
        uncancel_current()
        ledger.end(entry, "server_shutdown")
        end = pending + script.shutdown
        await send({"type": "http.response.body", "body": end, "more_body": False})
        return
    # The last events and the end of the body go out in one write; the ledger records the end
    # once they are out (a disconnect while they wait for the client wins).
    await send({"type": "http.response.body", "body": b"".join(due_now), "more_body": False})
    _sent(entry, tokens)
    ledger.end(entry, script.outcome)


def _sent(entry: Entry, tokens: int) -> None:
    """Record ``tokens`` more tokens written."""
    if tokens:
        if entry.first_token_at is None:
            entry.first_token_at = time.time()
        entry.tokens_sent += tokens


def uncancel_current() -> None:
    """A shutdown's cancellation is handled: the task goes on to write its last bytes."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()

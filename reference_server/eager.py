"""Run a coroutine in its caller until it first has to wait (Python 3.12's eager tasks, on 3.11).

Why: a token arrives in the upstream connection's ``data_received``, and the WebSocket write it
causes is a coroutine (ASGI's ``send``) that almost never waits. A task per write would put
every token behind one more turn of a busy event loop; stepping the coroutine here writes the
frame in the same callback. When it does wait (a paused transport), a task carries on from that
point, exactly as a task would have.

Only for coroutines that do not need to be *in* a task before their first wait: while stepped
here, ``asyncio.current_task()`` is the caller's (or None), so ``asyncio.timeout()`` must not be
entered before the first wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_eagerly"]

T = TypeVar("T")


def run_eagerly(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T] | None:
    """Step ``coro`` now. None when it finished without waiting (its exception, if any, is
    raised here); otherwise a coroutine that finishes it, to be run as a task."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return _carry_on(coro, waiting)


async def _carry_on(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    """What ``Task.__step`` does: wait for what the coroutine yielded, then resume it.

    The future is awaited directly, so this task wakes in the same turn, and in the same order,
    as a task that awaited it itself: a write that waited for a paused transport goes out
    before frames another task queued behind it. Its "blocking" mark is taken first, as the
    task step takes it (the coroutine's own ``await`` set it; awaiting it again with the mark
    set is an error). The coroutine reads the future's outcome from the future when resumed,
    so that outcome is not passed on; a cancel of this task that did not cancel the future is
    thrown into the coroutine.
    """
    while True:
        cancel: asyncio.CancelledError | None = None
        if waiting is None:
            try:
                await asyncio.sleep(0)  # a bare yield: one turn of the loop
            except asyncio.CancelledError as exc:
                cancel = exc
        else:
            waiting._asyncio_future_blocking = False
            try:
                await waiting
            except asyncio.CancelledError as exc:
                if not waiting.cancelled():
                    cancel = exc
            except Exception:
                if not waiting.done():
                    raise
        try:
            waiting = coro.send(None) if cancel is None else coro.throw(cancel)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]

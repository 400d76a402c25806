"""When a server runs full garbage collections: between streams, not in the middle of them.

A full collection walks every tracked object and holds the event loop while it does. With
hundreds of open streams a server holds hundreds of thousands of them (coroutines, tasks,
contexts of the in-flight streams and sockets), and CPython's automatic full collections
stalled every stream each time, several times a minute: 18-55 ms in the mock at 1,000 streams
(docs/mockllm.md, "Speed"), 40-150 ms in the reference server's relay at 500 (its
``loadtests.bench relay`` runs). So automatic full collections are switched off, and this
collector runs them itself: once the server is idle (no stream running and none started
since its last look, a quarter of a second before) after some traffic, and under sustained
load at most every ``interval_s``. The young generations keep their
automatic collections, which free most garbage; the full ones only find cycles that outlived
them (exception tracebacks, cancelled tasks), which can wait a minute.

It is off the token's way on purpose: the mock's app (and the reference server's) enter
:func:`managed_collections` at start-up, and the streams never wait for it.
:func:`full_collection_due` is the pure decision; :func:`run_collector` the loop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

__all__ = ["full_collection_due", "managed_collections", "run_collector"]

# The oldest generation's threshold counts young-generation collections: this never comes.
_NO_AUTOMATIC_FULL_COLLECTION = 1_000_000_000
_POLL_S = 0.25


def full_collection_due(
    *, now: float, last_full: float, idle: bool, traffic_since: bool, interval_s: float
) -> bool:
    """Collect when idle after traffic (a free moment), or when ``interval_s`` has passed."""
    return (idle and traffic_since) or now - last_full >= interval_s


async def run_collector(
    interval_s: float, active: Callable[[], int], traffic: Callable[[], int], seen: int
) -> None:
    """Forever: poll ``active()`` (running streams) and ``traffic()`` (a counter of started
    streams, ``seen`` at the start) and run ``gc.collect()`` when
    :func:`full_collection_due` says so."""
    loop = asyncio.get_running_loop()
    last_full = loop.time()
    previous = seen
    while True:
        await asyncio.sleep(_POLL_S)
        now = loop.time()
        count = traffic()
        # Idle: nothing running now and nothing started since the last poll. Short answers
        # under load (each written in one go) leave no stream running at most instants; a
        # full collection there would run four times a second in the middle of the load.
        idle = active() == 0 and count == previous
        previous = count
        if full_collection_due(
            now=now,
            last_full=last_full,
            idle=idle,
            traffic_since=count != seen,
            interval_s=interval_s,
        ):
            gc.collect()
            last_full, seen = loop.time(), count


@contextlib.asynccontextmanager
async def managed_collections(
    interval_s: float, active: Callable[[], int], traffic: Callable[[], int]
) -> AsyncIterator[None]:
    """While inside: no automatic full collections, :func:`run_collector` instead.
    ``interval_s <= 0`` leaves CPython's own policy alone."""
    if interval_s <= 0:
        yield
        return
    # The threshold is the process's: several apps in one process (tests) share one switch.
    if not _saved:
        _saved.append(gc.get_threshold())
        gc.set_threshold(_saved[0][0], _saved[0][1], _NO_AUTOMATIC_FULL_COLLECTION)
    _users.append(None)
    task = asyncio.ensure_future(run_collector(interval_s, active, traffic, traffic()))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _users.pop()
        if not _users:
            gc.set_threshold(*_saved.pop())


_saved: list[tuple[int, int, int]] = []
_users: list[None] = []

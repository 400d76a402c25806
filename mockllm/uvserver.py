"""uvicorn's server, stopping as soon as it is asked: the base of every server we run.

uvicorn notices a stop request on its next 0.1 s tick, then pauses another 0.1 s so open
connections can close, even when there are none. Every process of a stack (the mock, the
server under test, the fault proxy) paid those 0.2 s on each stop, one tier after another,
and a scenario run stops a stack every time (the test suite, hundreds of times). Here a stop
request wakes the loop at once, and the pause is kept for connections (and requests) that
exist.

Behaviour is otherwise uvicorn's: the graceful shutdown, its timeout, the lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import FrameType
from typing import Final

import uvicorn

__all__ = ["PromptServer"]

#: uvicorn's tick: how often the loop refreshes the Date header and checks its limits.
TICK_S: Final = 0.1


class PromptServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose stop (a signal or :meth:`request_exit`) takes effect now."""

    #: Seconds between ticks when nothing asks it to stop (tests lengthen it).
    tick_s: float = TICK_S

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """Stop serving (graceful shutdown); safe to call from any thread."""
        self.should_exit = True
        self._wake_main_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._wake_main_loop()

    def _wake_main_loop(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not serving yet: the first tick sees should_exit
        # Thread-safe, and safe in a signal handler: it only queues a call and writes to
        # the loop's self-pipe, which wakes a loop that sleeps in select().
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            # Open connections get their pause to close, and requests still running (a
            # client may hang up before its answer is ready) uvicorn's wait for them.
            await super().shutdown(sockets)
            return
        # Nothing to ask to close or to wait for (and nothing can arrive between the check
        # and the close: both run in this one step of the loop), so no pause.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

"""Sub-millisecond timers for the engine's scheduled deliveries.

asyncio's own timers cannot be finer than a millisecond: the default loop waits in
``epoll_wait``, whose timeout is whole milliseconds (rounded up, so a timer fires 0-1 ms late),
and uvloop's ``loop.time()`` is libuv's millisecond clock, cached once per loop iteration. A
latency toxic that should add 50 ms then adds 50-51 ms, more when chunks wait for a timer set
for a neighbour.

:class:`PreciseClock` keeps its own heap of timers on ``CLOCK_MONOTONIC``
(``time.monotonic``) and arms one Linux ``timerfd`` (nanosecond resolution, no timer slack) at
the earliest; the event loop only watches that file descriptor, so it works the same under
asyncio and uvloop. Every timer due when the fd fires runs in that one wakeup. Where timerfd is
not available (not Linux, no libc) it falls back to the loop's ``call_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import heapq
import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["Clock", "PreciseClock", "TimerHandle"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the engine's data path needs from a loop: a clock and timers on it."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


_CLOCK_MONOTONIC: Final = 1
_TFD_NONBLOCK: Final = os.O_NONBLOCK
_TFD_CLOEXEC: Final = os.O_CLOEXEC
_TFD_TIMER_ABSTIME: Final = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A non-blocking CLOCK_MONOTONIC timerfd through libc (Python 3.11 has no os.timerfd_*)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd: int = fd
        self._spec = _Itimerspec()

    def arm(self, when: float) -> None:
        """Fire at monotonic time ``when`` (in the past: at once)."""
        ns = max(int(when * 1e9), 1)  # 0 would disarm
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(ns, 1_000_000_000)
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)


class _Handle:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        # Lazy: the heap entry stays until it surfaces (or the heap is compacted).
        self.cancelled = True


class PreciseClock:
    """``time()`` and ``call_at()`` on ``time.monotonic`` with a timerfd wakeup."""

    #: Timers whose due time is at most this far ahead run in the current wakeup: a second
    #: wakeup costs more than the few microseconds of earliness it would avoid.
    COALESCE: Final = 50e-6

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time: Callable[[], float] = time.monotonic
        self._heap: list[tuple[float, int, _Handle]] = []
        self._seq = itertools.count()
        self._armed = math.inf
        self._fallback: asyncio.TimerHandle | None = None
        self._compact_at = 1024
        self._timerfd: _TimerFd | None = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                self._timerfd = _TimerFd()
                loop.add_reader(self._timerfd.fd, self._fire)
        #: True when wakeups are finer than the loop's millisecond timers.
        self.precise = self._timerfd is not None

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        if len(self._heap) > self._compact_at:
            self._compact()
        if when < self._armed:
            self._arm(when)
        return handle

    def _arm(self, when: float) -> None:
        self._armed = when
        if self._timerfd is not None:
            self._timerfd.arm(when)
            return
        if self._fallback is not None:
            self._fallback.cancel()
        delay = max(when - self.time(), 0.0)
        self._fallback = self.loop.call_at(self.loop.time() + delay, self._fire)

    def _fire(self) -> None:
        if self._timerfd is not None:
            self._timerfd.drain()
        self._fallback = None
        self._armed = math.inf
        heap = self._heap
        while heap:
            now = self.time()
            when, _, handle = heap[0]
            if when > now + self.COALESCE:
                break
            heapq.heappop(heap)
            if handle.cancelled:
                continue
            try:
                handle.callback()
            except Exception as exc:  # one broken callback must not strand the others
                self.loop.call_exception_handler(
                    {"message": "faultproxy timer callback failed", "exception": exc}
                )
        if heap:
            self._arm(heap[0][0])

    def _compact(self) -> None:
        """Drop cancelled entries (restarted stages cancel timers that never surface)."""
        self._heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)
        # Amortised: the next compaction only once the heap has doubled again.
        self._compact_at = max(1024, 2 * len(self._heap))

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if self._timerfd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self._timerfd.fd)
            self._timerfd.close()
            self._timerfd = None
        self._heap.clear()
        self.precise = False

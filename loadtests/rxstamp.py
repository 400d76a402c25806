"""Kernel receive timestamps: when bytes reached the socket, not when the user got to read them.

A load generator that stamps a frame when its read returns measures its own scheduling delay
along with the server: with hundreds of users in one gevent loop, a frame can wait in the
kernel for milliseconds while other users' frames are handled, and that wait shows up as TTFT
and ITL the server never caused. Linux records when each TCP segment arrived; with
``SO_TIMESTAMPNS`` on, ``recvmsg`` hands that time back (for several queued segments, the time of
the last one it read). We convert it to the ``time.perf_counter`` clock that every other stamp
of the load tests uses, and keep the difference (how long the bytes waited for the user) as
the *read delay*, the load generator's own health figure.

Where the option is missing (not Linux) or a read carries no stamp, the read's own time is
used and the read delay is 0: the old behaviour, no worse. (Linux switches stamping on for the
whole stack a moment after the first socket asks, so the very first segments of a process that
is alone in asking can come unstamped.)
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable

__all__ = ["StampedSocket", "enable_kernel_stamps", "stamp_from_ancillary"]

# Linux values (asm-generic/socket.h); Python's socket module does not export them.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


def enable_kernel_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp ``sock``'s incoming data; False where it cannot."""
    if not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def stamp_from_ancillary(
    ancillary: Iterable[tuple[int, int, bytes]], wall_now: float, perf_now: float
) -> float | None:
    """The kernel's arrival time from ``recvmsg`` ancillary data, on the perf_counter clock.

    ``wall_now`` and ``perf_now`` are read together just after the read: the stamp is a
    CLOCK_REALTIME time, so its age (``wall_now - stamp``) is carried over to the other clock.
    Reading both clocks at every read, rather than an offset once, keeps NTP slewing of the
    wall clock out of the result. None when no stamp came; an age below zero (the wall clock
    was stepped) counts as zero.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            if sec == 0 and nsec == 0:
                return None
            age = wall_now - (sec + nsec * 1e-9)
            return perf_now - age if age > 0.0 else perf_now
    return None


def clock_pair() -> tuple[float, float]:
    """The wall clock and the perf clock read at one instant, give or take a microsecond.

    Read one after the other, a preemption in between (milliseconds on a busy machine) would
    shift every stamp converted with the pair; so the wall clock is read between two perf
    reads and the pair is kept only when those two are close (a few tries, then the closest).
    """
    best: tuple[float, float, float] | None = None
    for _ in range(3):
        before = time.perf_counter()
        wall = time.time()
        after = time.perf_counter()
        if best is None or after - before < best[0]:
            best = (after - before, wall, (before + after) / 2)
        if after - before < 20e-6:
            break
    assert best is not None
    return best[1], best[2]


class StampedSocket:
    """``recv`` that also says when the data arrived: ``(data, arrived_at, read_delay)``.

    ``arrived_at`` is on the ``time.perf_counter`` clock; ``read_delay`` is how long the data
    waited in the kernel before this read (0 without kernel stamps).
    """

    __slots__ = ("kernel", "sock")

    def __init__(self, sock: socket.socket, kernel_stamps: bool = True) -> None:
        self.sock = sock
        self.kernel = kernel_stamps and enable_kernel_stamps(sock)

    def recv(self, size: int) -> tuple[bytes, float, float]:
        if not self.kernel:
            data = self.sock.recv(size)
            return data, time.perf_counter(), 0.0
        data, ancillary, _flags, _addr = self.sock.recvmsg(size, _ANCILLARY_SPACE)
        wall_now, perf_now = clock_pair()
        stamp = stamp_from_ancillary(ancillary, wall_now, perf_now)
        if stamp is None:
            return data, perf_now, 0.0
        return data, stamp, perf_now - stamp

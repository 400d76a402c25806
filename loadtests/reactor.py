"""One greenlet reads every streaming socket of a Locust process: a wake-up per batch of frames.

With one greenlet per user blocked in ``recv``, every frame costs a trip through gevent's hub:
an ``EAGAIN`` read, a timer for the socket timeout, a switch to the hub and one back. That was
about half of the 25-35 µs of CPU a Locust process spent per frame, and at 30k frames/s it kept
the process busy enough that frames waited in the kernel longer than a stream's token gap.

Here each streaming user hands its socket to the process's :class:`Reactor` for the length of a
stream. The reactor waits (through gevent) on one epoll descriptor, and when it is readable
reads every ready socket without blocking and calls that socket's handler, which parses and
records the frames itself. The user greenlet sleeps on an event until its stream ends or needs
it (a reconnect), so a frame costs one non-blocking ``recvmsg`` and the parsing.

The reactor reads a duplicate of each socket's descriptor through the original, unpatched
socket class, so a read can never park the reactor greenlet on one socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Protocol

import gevent
from gevent import monkey

__all__ = ["Reactor", "ReadHandler", "nonblocking_twin"]

_RawSocket: type[socket.socket] = monkey.get_original("socket", "socket")
_Epoll: Any = monkey.get_original("select", "epoll")
_EPOLLIN = 0x001


class ReadHandler(Protocol):
    def readable(self) -> None:
        """Read what is there without blocking (the reactor calls this when data is ready)."""

    def failed(self, exc: BaseException) -> None:
        """``readable`` raised: end the stream, the reactor forgets the socket."""


def nonblocking_twin(sock: socket.socket) -> socket.socket:
    """A second, unpatched, non-blocking socket object on a duplicate of ``sock``'s descriptor."""
    twin = _RawSocket(fileno=os.dup(sock.fileno()))
    twin.setblocking(False)
    return twin


class Reactor:
    """Registered sockets' handlers are called from one greenlet when data arrives."""

    def __init__(self) -> None:
        self._epoll = _Epoll()
        self._handlers: dict[int, ReadHandler] = {}
        self._greenlet: gevent.Greenlet[Any, Any] | None = None

    def add(self, fd: int, handler: ReadHandler) -> None:
        self._epoll.register(fd, _EPOLLIN)
        self._handlers[fd] = handler
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def __len__(self) -> int:
        return len(self._handlers)

    def _run(self) -> None:
        hub = gevent.get_hub()
        watcher = hub.loop.io(self._epoll.fileno(), 1)
        try:
            while self._handlers:
                hub.wait(watcher)
                for fd, _events in self._epoll.poll(0):
                    handler = self._handlers.get(fd)
                    if handler is None:
                        continue
                    try:
                        handler.readable()
                    except Exception as exc:  # one broken stream must not stop the others
                        self.remove(fd)
                        handler.failed(exc)
        finally:
            watcher.close()
            self._greenlet = None

"""Run in its own process (gevent patches the interpreter): drives loadtests.reactor over real
loopback sockets and prints one JSON line of what it saw. Used by test_reactor.py."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from loadtests.reactor import Reactor, nonblocking_twin  # noqa: E402
from loadtests.rxstamp import StampedSocket  # noqa: E402


class Collect:
    def __init__(self, sock: socket.socket, expect: int) -> None:
        self.twin = nonblocking_twin(sock)
        self.rx = StampedSocket(self.twin)
        self.data = b""
        self.expect = expect
        self.done = gevent.event.Event()
        self.broken = gevent.event.Event()
        self.error = ""

    def readable(self) -> None:
        while True:
            try:
                chunk, _, _ = self.rx.recv(65536)
            except BlockingIOError:
                return
            if not chunk:
                raise ConnectionResetError("peer closed")
            self.data += chunk
            if len(self.data) >= self.expect:
                self.done.set()

    def failed(self, exc: BaseException) -> None:
        self.error = type(exc).__name__
        self.broken.set()


def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    pairs = []
    for _ in range(20):
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        pairs.append((client, peer))
    reactor = Reactor()
    handlers = [Collect(c, 3000) for c, _ in pairs]
    for h in handlers:
        reactor.add(h.twin.fileno(), h)
    started = time.perf_counter()
    for _ in range(3):  # 20 sockets x 3 writes of 1000 bytes, interleaved
        for _, peer in pairs:
            peer.sendall(b"x" * 1000)
        gevent.sleep(0.01)
    ok = all(h.done.wait(5) for h in handlers)
    # a socket whose peer closes: its handler fails, the others stay registered
    pairs[0][1].close()
    handlers[0].broken.wait(5)
    reactor.remove(handlers[5].twin.fileno())
    print(json.dumps({
        "all_received": ok and all(len(h.data) == 3000 for h in handlers),
        "first_error": handlers[0].error,
        "registered": len(reactor),
        "elapsed": time.perf_counter() - started,
    }))  # fmt: skip


main()

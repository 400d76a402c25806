"""Helpers of the fault proxy tests: a real TCP upstream and socket/timing utilities."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time


class EchoServer:
    """Threaded TCP echo server; ``connections`` counts accepted sockets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.connections = 0
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self._stop = True
        # shutdown() wakes the thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self._lock:
            for conn in self._clients:
                with contextlib.suppress(OSError):
                    conn.close()
        self._thread.join(2)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def roundtrip_ms(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Send ``payload`` through an echo path and time its full return."""
    start = time.perf_counter()
    sock.sendall(payload)
    recv_exact(sock, len(payload))
    return (time.perf_counter() - start) * 1000


def median_roundtrip_ms(sock: socket.socket, count: int = 5) -> float:
    return statistics.median(roundtrip_ms(sock) for _ in range(count))


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> tuple[bytes, str]:
    """Read to the end; returns the bytes and how it ended: "eof", "reset" or "timeout"."""
    sock.settimeout(limit)
    buf = bytearray()
    try:
        while data := sock.recv(65536):
            buf += data
    except ConnectionResetError:
        return bytes(buf), "reset"
    except TimeoutError:
        return bytes(buf), "timeout"
    return bytes(buf), "eof"


def assert_added_latency(rtt_ms: float, base_ms: float, expected_ms: float) -> None:
    """A toxic's latency was added: never less (a delay cannot shrink; timers may fire 0.5 ms
    early), and less than twice over the baseline: the slack above (35 ms, or 40 % of the
    latency) is for a busy machine, and stays below a latency applied twice."""
    slack = max(35.0, 0.4 * expected_ms)
    assert rtt_ms >= expected_ms - 1.5, (rtt_ms, base_ms, expected_ms)
    assert rtt_ms - base_ms <= expected_ms + slack, (rtt_ms, base_ms, expected_ms, slack)

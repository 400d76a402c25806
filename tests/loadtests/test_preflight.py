"""``load --target URL`` is checked before Locust starts: real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from loadtests.preflight import target_problem
from tests.support import LiveStack


def test_a_port_nobody_listens_on_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = target_problem(f"http://127.0.0.1:{port}")
    assert problem is not None
    assert problem.startswith(f"target http://127.0.0.1:{port} is unreachable (127.0.0.1:{port}: ")
    assert "start the server, or fix --target" in problem


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts connections and closes them without a word (not a web server)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)


def test_a_listener_that_does_not_speak_http_is_named(silent_listener: int) -> None:
    problem = target_problem(f"http://127.0.0.1:{silent_listener}", timeout_s=2.0)
    assert problem is not None
    assert "accepted a connection but did not answer an HTTP request" in problem


@pytest.mark.integration
def test_a_web_server_answers_whatever_the_status(live_stack: LiveStack) -> None:
    assert target_problem(live_stack.server) is None  # GET / is a 404 there: still an answer

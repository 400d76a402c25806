"""PromptServer: a stop request takes effect at once, not on uvicorn's next tick, and the
pause uvicorn grants open connections is skipped only when there are none."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from mockllm.listen import bind_socket
from mockllm.uvserver import PromptServer
from tests.support import wait_for

pytestmark = pytest.mark.integration

# Far longer than any wait below: a stop that waited for the tick would time the test out.
LONG_TICK_S = 120.0


EVENTS: list[str] = []  # what the app saw happen, in order


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        EVENTS.append("lifespan shutdown")
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/slow":
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            EVENTS.append("request cancelled")
            raise
        EVENTS.append("request finished")
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


class Serving:
    """A PromptServer with a long tick, serving in a thread of its own."""

    def __init__(self) -> None:
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.server = PromptServer(uvicorn.Config(hello, log_level="warning", lifespan="on"))
        self.server.tick_s = LONG_TICK_S
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def stopped_within(self, timeout_s: float) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()


@pytest.fixture
def serving() -> Iterator[Serving]:
    s = Serving()
    s.thread.start()
    wait_for(lambda: s.server.started or not s.thread.is_alive(), what="the server started")
    assert s.server.started, "the server thread ended before serving"
    yield s
    s.server.force_exit = True
    s.server.request_exit()
    s.thread.join(10)
    s.sock.close()


def _get_and_close(port: int) -> bytes:
    """One request on a connection the server closes: once the end of its response is read,
    the server no longer counts the connection (it forgets it before closing the socket)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        return received


@pytest.fixture
def uvicorn_shutdowns(monkeypatch: pytest.MonkeyPatch) -> list[uvicorn.Server]:
    """The servers that went through uvicorn's own shutdown (with its pause)."""
    calls: list[uvicorn.Server] = []
    original = uvicorn.Server.shutdown

    async def spy(self: uvicorn.Server, sockets: Any = None) -> None:
        calls.append(self)
        await original(self, sockets)

    monkeypatch.setattr(uvicorn.Server, "shutdown", spy)
    return calls


def test_a_stop_request_from_another_thread_ends_the_server_before_its_next_tick(
    serving: Serving, uvicorn_shutdowns: list[uvicorn.Server]
) -> None:
    assert _get_and_close(serving.port).endswith(b"hello")
    serving.server.request_exit()
    assert serving.stopped_within(10), "the stop waited for the tick"
    # The GET's connection is closed: no open connection, so not uvicorn's paused shutdown.
    assert uvicorn_shutdowns == []


def test_an_open_connection_gets_uvicorns_graceful_shutdown(
    serving: Serving, uvicorn_shutdowns: list[uvicorn.Server]
) -> None:
    calls = uvicorn_shutdowns
    with socket.create_connection(("127.0.0.1", serving.port), timeout=10) as idle:
        # The server counts the connection once it has read from it.
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"hello"):  # the head and the body may come apart
            chunk = idle.recv(4096)
            assert chunk, received
            received += chunk
        serving.server.request_exit()
        assert serving.stopped_within(10)
        assert calls == [serving.server]
        assert idle.recv(4096) == b"", "uvicorn closes the idle keep-alive connection"


def test_a_request_whose_client_hung_up_is_finished_before_the_lifespan_ends(
    serving: Serving, uvicorn_shutdowns: list[uvicorn.Server]
) -> None:
    EVENTS.clear()
    with socket.create_connection(("127.0.0.1", serving.port), timeout=10) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: len(serving.server.server_state.tasks), what="the request running")
    # The client is gone, its request is not: no connection left, one task.
    wait_for(lambda: len(serving.server.server_state.connections), until=lambda n: n == 0)
    serving.server.request_exit()
    assert serving.stopped_within(10)
    assert uvicorn_shutdowns == [serving.server]
    assert EVENTS == ["request finished", "lifespan shutdown"]


SIGNALLED = f"""
import asyncio, uvicorn
from mockllm.listen import bind_socket
from mockllm.uvserver import PromptServer
from tests.mockllm.test_uvserver import hello

class Announcing(PromptServer):
    tick_s = {LONG_TICK_S}

    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("serving", flush=True)

server = Announcing(uvicorn.Config(hello, log_level="warning", lifespan="on"))
asyncio.run(server.serve(sockets=[bind_socket("127.0.0.1", 0)]))
"""


def test_a_stop_signal_ends_the_server_before_its_next_tick() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"serving\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)  # TimeoutExpired: the signal waited for the tick
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

"""The streamed-HTTP reader of the load users, against the real mock and reference server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from loadtests.httpstream import HttpStreamClient, HttpStreamError
from tests.support import LiveStack

pytestmark = pytest.mark.integration

_CHAT = {
    "model": "mock",
    "stream": True,
    "messages": [{"role": "user", "content": "[[mock ttft_ms=50 itl_ms=20 tokens=5]] hi"}],
}


def _events(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_chunks_carry_arrival_times_on_the_schedule_and_the_connection_is_kept(
    live_stack: LiveStack,
) -> None:
    delays: list[tuple[float, float]] = []
    client = HttpStreamClient(live_stack.mock, timeout=10, read_delays=delays)
    try:
        for _ in range(2):
            sent = time.perf_counter()
            with client.request("POST", "/v1/chat/completions", json_body=_CHAT) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                stamps: list[float] = []
                body = b""
                for data, arrived in response.chunks():
                    body += data
                    stamps.append(arrived)
            events = _events(body)
            assert events[-1] == "[DONE]"
            assert sum(bool(json.loads(e)["choices"][0]["delta"].get("content"))
                       for e in events[:-1] if json.loads(e)["choices"]) == 5  # fmt: skip
            assert stamps == sorted(stamps)
            # first bytes about 50 ms after sending, the last about 50 + 4 x 20 ms
            assert 0.035 <= stamps[0] - sent <= 0.5
            assert 0.10 <= stamps[-1] - sent <= 1.0
            if _ == 0:
                first_socket = client._sock
        assert client._sock is first_socket is not None  # kept alive, reused
        assert delays and all(d >= 0 for _, d in delays)
    finally:
        client.close()


def test_error_status_and_body_are_readable(live_stack: LiveStack) -> None:
    client = HttpStreamClient(live_stack.server, timeout=10)
    try:
        with client.request("GET", "/v1/streams/nope/events") as response:
            assert response.status_code == 404
            assert "unknown_stream" in response.text()
        assert client._sock is not None  # read to the end: kept for the next request
    finally:
        client.close()


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="plain http"):
        HttpStreamClient("https://example.com", timeout=1)


@pytest.fixture
def half_server() -> Iterator[str]:
    """Answers one request with a chunked 200, one chunk, then closes mid-body."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        thread.join(timeout=5)


def test_a_body_cut_off_is_an_error_not_a_clean_end(half_server: str) -> None:
    client = HttpStreamClient(half_server, timeout=5)
    with client.request("GET", "/") as response:
        chunks = response.chunks()
        assert next(chunks)[0] == b"hello"
        with pytest.raises(HttpStreamError):
            next(chunks)
    assert client._sock is None  # a broken connection is not reused

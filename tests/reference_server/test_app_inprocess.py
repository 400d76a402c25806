"""The app in this process: ``create_app(Settings(...))`` driven by Starlette's TestClient.

Each session rule once more, now through the real endpoint (the socket shell, the session, the
manager and the store together) without a uvicorn process. Tests that need tokens stream them
from the mock provider of the ``mock`` fixture; the others never reach the upstream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from reference_server import PROTOCOL_V1, Settings, create_app
from reference_server.manager import StreamManager
from tests.reference_server.live import Ledger, Process
from tests.reference_server.wsclient import prompt
from tests.support import wait_for

# Never called: the tests that use it send nothing that reaches the provider.
NO_UPSTREAM = "http://127.0.0.1:9/v1"
TERMINAL = ("end", "error", "cancelled")


class _Handlers:
    """Counts the WebSocket handlers still running.

    Leaving a TestClient socket cancels its handler if it has not returned yet, and a handler
    cancelled in its cleanup ends the test with a CancelledError; a test waits for them first.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.running = 0
        self.changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        with self.changed:
            self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def wait_for_at_most(self, running: int, timeout: float = 10.0) -> None:
        with self.changed:
            done = self.changed.wait_for(lambda: self.running <= running, timeout)
            assert done, f"{self.running} handlers still run, {running} expected"


class V1:
    """One v1 socket; reading skips the server's heartbeat pings."""

    def __init__(self, ws: WebSocketTestSession) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = ws.receive_json()
        assert self.hello["type"] == "hello"

    def send(self, **message: Any) -> None:
        self.ws.send_json(message)

    def recv(self) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = self.ws.receive_json()
            if message["type"] != "ping":
                return message

    def until_terminal(self, chat_id: str) -> list[dict[str, Any]]:
        """Messages up to and including ``chat_id``'s terminal one."""
        got = [self.recv()]
        while not (got[-1]["type"] in TERMINAL and got[-1].get("id") == chat_id):
            got.append(self.recv())
        return got


class App:
    """The app of one test, its manager, and sockets that are left cleanly."""

    def __init__(self, client: TestClient, manager: StreamManager, handlers: _Handlers) -> None:
        self.client = client
        self.manager = manager
        self.handlers = handlers
        self.open = 0  # sockets of this test still open (their handlers may run)

    @contextmanager
    def connect(
        self, url: str, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> Iterator[WebSocketTestSession]:
        with self.client.websocket_connect(url, subprotocols, **kwargs) as ws:
            self.open += 1
            try:
                yield ws
            finally:
                ws.close(1000)  # a no-op for the server if it closed first
                self.open -= 1
                self.handlers.wait_for_at_most(self.open)

    @contextmanager
    def v1(self, client_id: str = "alice", query: str = "", **kwargs: Any) -> Iterator[V1]:
        with self.connect(f"/ws/chat/{client_id}{query}", [PROTOCOL_V1], **kwargs) as ws:
            yield V1(ws)

    def close_code(self, url: str, **kwargs: Any) -> int:
        """The code the server closes a fresh v1 socket with before sending anything."""
        with (
            self.connect(url, [PROTOCOL_V1], **kwargs) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_json()
        return closed.value.code


@contextmanager
def serve(upstream: str = NO_UPSTREAM, **settings: Any) -> Iterator[App]:
    base: dict[str, Any] = {"heartbeat_interval_s": 5, "upstream_backoff_base_s": 0.01}
    app = create_app(Settings(upstream_url=upstream, **{**base, **settings}))
    handlers = _Handlers(app)
    with TestClient(handlers) as client:  # runs the lifespan: manager, reaper, upstream client
        yield App(client, app.state.manager, handlers)


def mock_url(mock: Process) -> str:
    return f"{mock.url}/v1"


def indexes(messages: list[dict[str, Any]]) -> list[int]:
    return [m["index"] for m in messages if m["type"] == "token"]


# --- admission and hello (no upstream)


def test_hello_announces_the_session_and_the_limits() -> None:
    with serve(max_streams_per_connection=3, resume_grace_s=2) as app, app.v1() as s:
        hello = s.hello
        assert hello["protocol"] == PROTOCOL_V1 and hello["session_id"]
        assert len(hello["resume_token"]) >= 16 and hello["heartbeat_interval_ms"] == 5000
        assert hello["limits"]["max_streams"] == 3 and hello["limits"]["resume_grace_ms"] == 2000


def test_an_origin_outside_the_allow_list_is_closed_1008() -> None:
    with serve(allowed_origins=["https://good.example"]) as app:
        assert app.close_code("/ws/chat/a", headers={"origin": "https://evil.example"}) == 1008
        with app.v1(headers={"origin": "https://good.example"}) as s:
            assert s.hello["protocol"] == PROTOCOL_V1


def test_a_missing_or_wrong_bearer_token_is_closed_1008() -> None:
    with serve(auth_token="s3cret") as app:
        assert app.close_code("/ws/chat/a") == 1008
        assert app.close_code("/ws/chat/a?access_token=wrong") == 1008
        with app.v1(query="?access_token=s3cret") as s:
            assert s.hello["protocol"] == PROTOCOL_V1


# --- bad input, ping, liveness (no upstream)


def test_bad_input_gets_an_error_and_the_socket_stays_usable() -> None:
    with serve() as app, app.v1() as s:
        s.ws.send_text("{not json")
        assert s.recv()["code"] == "invalid_json"
        s.ws.send_bytes(b"\x00\x01")
        assert s.recv()["code"] == "binary_not_supported"
        s.send(type="shout", id="x")
        error = s.recv()
        assert (error["code"], error["id"]) == ("unknown_type", "x")
        s.send(type="chat", id="a", messages=[{"role": "user"}], max_tokens="5")
        error = s.recv()
        assert (error["code"], error["id"]) == ("invalid_message", "a")
        s.send(type="ping", ts=42)
        assert s.recv() == {"type": "pong", "ts": 42}


def test_over_the_message_rate_a_message_gets_rate_limited() -> None:
    with serve(messages_per_second=0.5, message_burst=2) as app, app.v1() as s:
        for ts in range(3):
            s.send(type="ping", ts=ts)
        assert s.recv() == {"type": "pong", "ts": 0}
        assert s.recv() == {"type": "pong", "ts": 1}
        error = s.recv()
        assert error["code"] == "rate_limited" and error["retryable"] is True


def test_a_silent_client_is_closed_1011_and_pongs_keep_it_open() -> None:
    with serve(heartbeat_interval_s=0.1, heartbeat_timeout_s=0.35) as app:
        with app.v1() as s:
            for _ in range(5):  # five pings answered: 0.5 s, past the timeout
                ping = s.ws.receive_json()
                assert ping["type"] == "ping"
                s.send(type="pong", ts=ping["ts"])
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:  # silent from now on: pings, then the close
                    assert s.ws.receive_json()["type"] == "ping"
        assert closed.value.code == 1011


def test_resume_or_cancel_of_an_unknown_stream() -> None:
    with serve() as app, app.v1() as s:
        s.send(type="resume", stream_id="nope", after=-1, resume_token="t")
        error = s.recv()
        assert (error["code"], error["stream_id"]) == ("unknown_stream", "nope")
        s.send(type="cancel", id="zz")
        error = s.recv()
        assert (error["code"], error["id"]) == ("unknown_stream", "zz")


def test_tutorial_bad_input_gets_an_error_frame() -> None:
    with serve() as app, app.connect("/ws/chat/t") as ws:
        ws.send_text("{nope")
        error = ws.receive_json()
        assert error["type"] == "error" and error["message"].startswith("invalid_json: ")


# --- streams (tokens from the mock provider)


@pytest.mark.integration
def test_a_chat_streams_start_tokens_end(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock)) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("hello", tokens=6))
        got = s.until_terminal("a")
        assert got[0]["type"] == "start" and got[0]["replay"] is False
        assert indexes(got) == list(range(6))
        assert got[-1]["type"] == "end" and got[-1]["tokens"] == 6
    [entry] = ledger.wait(1, outcome="completed")
    assert entry["text"] == "".join(m["content"] for m in got if m["type"] == "token")


@pytest.mark.integration
def test_a_resend_on_the_same_socket_replays_without_a_second_generation(
    mock: Process, ledger: Ledger
) -> None:
    with serve(mock_url(mock)) as app, app.v1() as s:
        messages = prompt("once", tokens=8)
        s.send(type="chat", id="a", messages=messages)
        first = s.until_terminal("a")
        s.send(type="chat", id="a", messages=messages, after=4)
        again = s.until_terminal("a")
        assert again[0]["type"] == "start" and again[0]["replay"] is True
        assert again[0]["stream_id"] == first[0]["stream_id"]
        assert indexes(again) == [5, 6, 7] and again[-1]["type"] == "end"
    ledger.wait(1, outcome="completed")
    assert len(ledger.requests()) == 1


@pytest.mark.integration
def test_a_resend_on_a_new_socket_proves_the_session_with_its_token(
    mock: Process, ledger: Ledger
) -> None:
    with serve(mock_url(mock)) as app:
        with app.v1() as first:
            messages = prompt("resend", tokens=10)
            first.send(type="chat", id="a", messages=messages)
            seen = first.until_terminal("a")
            token = first.hello["resume_token"]
        with app.v1() as second:
            second.send(type="chat", id="a", messages=messages, resume_token=token, after=6)
            got = second.until_terminal("a")
            assert got[0]["replay"] is True and got[0]["stream_id"] == seen[0]["stream_id"]
            assert indexes(got) == [7, 8, 9]
        with app.v1(client_id="mallory") as thief:
            thief.send(type="chat", id="a", messages=messages, resume_token=token)
            error = thief.recv()
            assert (error["code"], error["id"]) == ("forbidden", "a")
    assert len(ledger.requests()) == 1


@pytest.mark.integration
def test_resume_by_stream_id_needs_the_stream_or_session_token(
    mock: Process, ledger: Ledger
) -> None:
    with serve(mock_url(mock)) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("resume", tokens=5))
        start = s.until_terminal("a")[0]
        stream_id = start["stream_id"]
        s.send(type="resume", stream_id=stream_id, after=2, resume_token="wrong")
        error = s.recv()
        assert (error["code"], error["stream_id"]) == ("forbidden", stream_id)
        for token in (start["resume_token"], s.hello["resume_token"]):
            s.send(type="resume", stream_id=stream_id, after=2, resume_token=token)
            got = s.until_terminal("a")
            assert got[0]["replay"] is True and indexes(got) == [3, 4]


@pytest.mark.integration
def test_a_stream_past_its_retention_is_expired(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock), stream_retention_s=0) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("gone", tokens=2))
        start = s.until_terminal("a")[0]
        store = app.manager.store
        wait_for(lambda: store.expired(start["stream_id"]))
        s.send(type="resume", stream_id=start["stream_id"], after=-1, resume_token="x")
        error = s.recv()
        assert (error["code"], error["stream_id"]) == ("stream_expired", start["stream_id"])


@pytest.mark.integration
def test_an_abandoned_stream_is_expired_for_a_resend_and_a_resume(
    mock: Process, ledger: Ledger
) -> None:
    with serve(mock_url(mock), resume_grace_s=0.2) as app:
        messages = prompt("abandoned", tokens=500, itl_ms=20)
        with app.v1() as first:
            first.send(type="chat", id="a", messages=messages)
            start = first.recv()
            token = first.hello["resume_token"]
        record = app.manager.store.get(start["stream_id"])
        assert record is not None
        wait_for(lambda: record.outcome is not None)
        with app.v1() as second:
            second.send(type="chat", id="a", messages=messages, resume_token=token)
            error = second.recv()
            assert (error["code"], error["id"]) == ("stream_expired", "a")
            second.send(
                type="resume",
                stream_id=start["stream_id"],
                after=-1,
                resume_token=start["resume_token"],
            )
            error = second.recv()
            assert (error["code"], error["stream_id"]) == ("stream_expired", start["stream_id"])
    ledger.wait(1, outcome="client_disconnected")  # the grace ran out: upstream stopped


@pytest.mark.integration
def test_an_id_followed_from_another_session_is_in_use(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock)) as app:
        messages = prompt("long", tokens=500, itl_ms=20)
        with app.v1() as first, app.v1() as second:
            first.send(type="chat", id="a", messages=messages)
            assert first.recv()["type"] == "start"
            token = first.hello["resume_token"]
            second.send(type="chat", id="a", messages=messages, resume_token=token)
            assert second.recv()["replay"] is True
            second.send(type="chat", id="a", messages=messages)  # its own session: a new chat
            got = second.recv()
            while got["type"] != "error":
                got = second.recv()
            assert got["code"] == "invalid_message" and got["id"] == "a"
            first.send(type="cancel", id="a")
            assert first.until_terminal("a")[-1]["type"] == "cancelled"


@pytest.mark.integration
def test_one_stream_over_the_limit_gets_too_many_streams(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock), max_streams_per_connection=1) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("a", tokens=500, itl_ms=20))
        assert s.recv()["type"] == "start"
        s.send(type="chat", id="b", messages=prompt("b", tokens=2))
        got = s.recv()
        while got["type"] != "error":
            got = s.recv()
        assert (got["code"], got["id"], got["retryable"]) == ("too_many_streams", "b", True)
        s.send(type="cancel", id="a")
        assert s.until_terminal("a")[-1]["type"] == "cancelled"
        s.send(type="chat", id="b", messages=prompt("b", tokens=2))
        assert s.until_terminal("b")[-1]["type"] == "end"


@pytest.mark.integration
def test_a_new_chat_never_cancels_another(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock)) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("a", tokens=20, itl_ms=5))
        s.send(type="chat", id="b", messages=prompt("b", tokens=3))
        ends: dict[str, str] = {}
        while len(ends) < 2:
            message = s.recv()
            if message["type"] in TERMINAL:
                ends[message["id"]] = message["type"]
        assert ends == {"a": "end", "b": "end"}


@pytest.mark.integration
def test_the_tutorial_shape_streams_tokens_then_end(mock: Process, ledger: Ledger) -> None:
    with serve(mock_url(mock)) as app, app.connect("/ws/chat/t") as ws:
        ws.send_json({"message": "[[mock tokens=3]] hi"})
        frames = [ws.receive_json() for _ in range(4)]
        assert [f["type"] for f in frames] == ["token", "token", "token", "end"]


@pytest.mark.integration
def test_cancel_answers_with_the_last_index_sent_and_stops_the_upstream(
    mock: Process, ledger: Ledger
) -> None:
    with serve(mock_url(mock)) as app, app.v1() as s:
        s.send(type="chat", id="a", messages=prompt("a", tokens=500, itl_ms=10))
        got = [s.recv(), s.recv(), s.recv()]  # start and two tokens
        s.send(type="cancel", id="a")
        got += s.until_terminal("a")
        assert got[-1] == {"type": "cancelled", "id": "a", "index": indexes(got)[-1]}
    ledger.wait(1, outcome="client_disconnected")


@pytest.mark.integration
def test_a_tool_call_shares_the_token_index_sequence(mock: Process, ledger: Ledger) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    with serve(mock_url(mock)) as app, app.v1() as s:
        s.send(type="chat", id="t", messages=prompt("weather?", tool="get_weather"), tools=tools)
        got = s.until_terminal("t")
        streamed = [m for m in got if m["type"] in ("token", "tool_call")]
        calls = [m for m in streamed if m["type"] == "tool_call"]
        assert calls and calls[0]["name"] == "get_weather" and calls[0]["call_id"]
        assert [m["index"] for m in streamed] == list(range(len(streamed)))
        assert got[-1]["type"] == "end" and got[-1]["finish_reason"] == "tool_calls"

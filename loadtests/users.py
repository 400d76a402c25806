"""Locust users for every transport of the reference server (gevent + blocking clients).

Imported only inside Locust processes: it imports Locust, which monkey-patches the standard
library with gevent. The asyncio ``websockets`` client does not run under gevent, so the
WebSocket users use ``websocket-client`` and the HTTP users ``requests`` (both cooperative once
patched). Parsing is the shared client library's (:mod:`scenarios.clients`), the same code the
scenarios and tests use, so a Locust run and a scenario agree on what a stream was.

How timing stays honest at high frame rates: the receive loop only reads a frame and hands it
to the pure recorder with the time the kernel received it (:mod:`loadtests.rxstamp`: a frame
that waited while other users ran is not stamped late); nothing is reported per frame. A
``WsV1User``'s stream is read by the process's one reader greenlet (:mod:`loadtests.reactor`),
so a frame costs no greenlet switch of its own.
When a stream ends it is summarised once (:func:`loadtests.metrics.summarise_stream`) into the
process's exact :class:`~loadtests.metrics.LoadMetrics`, and ONE Locust event is fired per
metric (request types ``TTFT``, ``TPOT``, ``E2E`` and ``STREAM``), so Locust's UI and CSV show
streaming figures live at a cost of a few events per stream, not one per token.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import random
import secrets
import time
from collections import deque
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent.event
import requests
import websocket
from gevent import GreenletExit
from locust import User, task
from locust.env import Environment

from loadtests.errors import ConnectionClosed, HttpStreamError, StreamError
from loadtests.httpstream import HttpStreamClient
from loadtests.metrics import UNFINISHED, LoadMetrics
from loadtests.options import UserOptions
from loadtests.reactor import Reactor, nonblocking_twin
from loadtests.rxstamp import StampedSocket
from loadtests.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_code,
)
from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord
from scenarios.clients.sse import SSEEvent, SSEParser, SSERecorder
from scenarios.clients.tutorial import TutorialRecorder, decode_tutorial, encode_tutorial
from scenarios.clients.v1 import (
    PROTOCOL,
    V1Hello,
    V1Ping,
    V1Recorder,
    decode_v1,
    encode_cancel,
    encode_chat,
    encode_pong,
    encode_resume,
)
from scenarios.profiles import Frame, Profile, ProfileRecorder, RequestValues, load_profile
from scenarios.profiles.frames import (
    ChunkDecoder,
    LineSplitter,
    render,
    render_headers,
    render_text,
    render_url,
)

__all__ = [
    "BlockingUser",
    "OpenAIUser",
    "PollingUser",
    "ProfileUser",
    "SseUser",
    "StreamError",
    "TutorialUser",
    "UserOptions",
    "WsV1User",
]


def metrics_of(environment: Environment) -> LoadMetrics:
    """The process's exact metrics, created by the locustfile's ``init`` listener."""
    metrics: LoadMetrics | None = getattr(environment, "streamharness_metrics", None)
    if metrics is None:
        metrics = LoadMetrics()
        environment.streamharness_metrics = metrics  # type: ignore[attr-defined]
    return metrics


def report_stream(environment: Environment, record: StreamRecord, probe_lag: bool = False) -> None:
    """Summarise one finished stream into the exact metrics and fire one event per metric."""
    outcome: str = record.outcome or "error"
    if outcome == "completed" and record.reconnects:
        outcome = "resumed"
    sent_at = record.sent_at if record.sent_at is not None else 0.0
    ended_at = record.ended_at if record.ended_at is not None else time.perf_counter()
    metrics = metrics_of(environment)
    sample = metrics.record_stream(
        transport=record.transport,
        outcome=outcome,
        sent_at=sent_at,
        sent_at_epoch=record.sent_at_epoch or 0.0,
        arrivals=[a.t for a in record.arrivals],
        ended_at=ended_at,
        error_code=record.error_code,
    )
    window = _bench_window(environment) if probe_lag else None
    if window is not None:
        # Bench only: the frame source writes its perf_counter send time as the content.
        lo, hi = window
        lags = []
        for a in record.arrivals:
            if lo <= a.t < hi:
                with contextlib.suppress(ValueError):
                    lags.append(a.t - float(a.content))
        metrics.lag.add_many(lags)
    fire: Any = environment.events.request.fire
    name = record.transport
    exception: Exception | None = None
    if outcome in ("error", "timeout", "disconnected"):
        detail = record.error_code or (
            f"close {record.close_code}" if record.close_code is not None else "no end"
        )
        exception = StreamError(f"{outcome}: {detail}")
    fire(
        request_type="STREAM",
        name=name,
        response_time=sample.duration_s * 1000.0,
        response_length=sample.tokens,
        exception=exception,
        context={"outcome": outcome},
    )
    if exception is not None:
        return
    for request_type, value in (
        ("TTFT", sample.ttft_s),
        ("TPOT", sample.tpot_s),
        ("E2E", sample.e2e_s),
    ):
        if value is not None:
            fire(
                request_type=request_type,
                name=name,
                response_time=value * 1000.0,
                response_length=sample.tokens,
                exception=None,
                context={},
            )


def _bench_window(environment: Environment) -> tuple[float, float] | None:
    """The benchmarks' steady-state window (set by the locustfile), perf_counter times."""
    window: tuple[float, float] | None = getattr(environment, "streamharness_lag_window", None)
    return window


def record_unfinished(environment: Environment, record: StreamRecord) -> None:
    """Into the exact metrics only: Locust's statistics count requests that ended."""
    if record.sent_at is None:
        return
    metrics_of(environment).record_stream(
        transport=record.transport,
        outcome=UNFINISHED,
        sent_at=record.sent_at,
        sent_at_epoch=record.sent_at_epoch or 0.0,
        arrivals=[a.t for a in record.arrivals],
        ended_at=time.perf_counter(),
    )


_READ_SIZE = 65536  # one read takes whatever is queued, up to this
_user_ids = itertools.count()
# Stream ids are idempotency keys on the server: they must not repeat across runs or across
# worker processes, so each process adds a random token. Only names come from it; every
# decision a user makes still comes from the seeded RNG below.
_PROCESS_TOKEN = secrets.token_hex(3)


class StreamingUser(User):
    """One simulated person: opens a stream, reads it to the end, thinks, repeats."""

    abstract = True
    transport: ClassVar[str] = ""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.options = UserOptions.from_parsed(environment.parsed_options)
        self.user_index = next(_user_ids)
        # Every decision a user makes comes from its own seeded RNG: same seed, same plan.
        # The worker's index keeps workers from replaying each other's plans.
        worker = getattr(environment.runner, "worker_index", 0)
        self.rng = random.Random(f"{self.options.seed}:{worker}:{self.transport}:{self.user_index}")
        self.client_id = f"load-{_PROCESS_TOKEN}-{self.user_index}"
        self.stream_counter = itertools.count()
        self.current: StreamRecord | None = None
        # Per read, (stamp, how long the data waited in the kernel) (see loadtests.rxstamp);
        # kept per user and handed to the metrics once per stream, like per-token figures.
        self.read_delays: list[tuple[float, float]] = []

    def wait_time(self) -> float:
        lo, hi = self.options.think_min_s, self.options.think_max_s
        return lo if hi <= lo else self.rng.uniform(lo, hi)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.options.prompt}]

    def new_record(self) -> StreamRecord:
        n = next(self.stream_counter)
        record = StreamRecord(transport=self.transport, id=f"{self.client_id}-{n}")  # type: ignore[arg-type]
        self.current = record
        return record

    def plan_interrupt(self, can_drop: bool) -> str | None:
        """``"cancel"``, ``"drop"`` or None for the next stream (seeded)."""
        roll = self.rng.random()
        if roll < self.options.cancel_rate:
            return "cancel"
        if can_drop and roll < self.options.cancel_rate + self.options.drop_rate:
            return "drop"
        return None

    @task
    def one_stream(self) -> None:
        try:
            record = self.run_stream()
        except GreenletExit:
            # Locust stops users by killing their greenlet. Keep the tokens of the stream that
            # was running (tokens/s and gaps are real) as "unfinished", then let the kill go on.
            # A stream the reactor already ended (the kill came before this greenlet woke to
            # report it) is reported as it ended: the server saw it whole.
            current = self.current
            if current is not None and current.done:
                report_stream(self.environment, current, self.options.probe_lag)
            elif current is not None:
                record_unfinished(self.environment, current)
            self.flush_read_delays()
            raise
        report_stream(self.environment, record, self.options.probe_lag)
        self.flush_read_delays()

    def flush_read_delays(self) -> None:
        delays = self.read_delays
        if not delays:
            return
        window = _bench_window(self.environment) if self.options.probe_lag else None
        if window is not None:
            # Bench: the steady window only, like the timing error it is compared with.
            lo, hi = window
            values = [d for t, d in delays if lo <= t < hi]
        else:
            values = [d for _, d in delays]
        metrics_of(self.environment).read_delay.add_many(values)
        delays.clear()

    def run_stream(self) -> StreamRecord:
        raise NotImplementedError

    @property
    def http_base(self) -> str:
        return (self.host or "").rstrip("/")

    @property
    def ws_base(self) -> str:
        base = self.http_base
        return "ws" + base[4:] if base.startswith("http") else base


# --- WebSocket ---------------------------------------------------------------------------


class _WsBase(StreamingUser):
    """websocket-client opens the connection and sends; reads go through :class:`FrameReader`
    on the raw socket in 64 KiB chunks (see :mod:`loadtests.wsframes` for why), each stamped
    with the kernel's receive time (:mod:`loadtests.rxstamp`)."""

    abstract = True
    subprotocol: ClassVar[str | None] = None

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.ws: websocket.WebSocket | None = None
        self.rx: StampedSocket | None = None
        self.reader = FrameReader()
        self.pending: deque[tuple[float, int, bytes]] = deque()

    def connect(self) -> websocket.WebSocket:
        kwargs: dict[str, Any] = {"timeout": self.options.stream_timeout_s}
        if self.subprotocol:
            kwargs["subprotocols"] = [self.subprotocol]
        ws = websocket.create_connection(f"{self.ws_base}/ws/chat/{self.client_id}", **kwargs)
        if ws.sock is None:
            raise ConnectionClosed(None)
        self.ws = ws
        self.rx = StampedSocket(ws.sock, self.options.kernel_stamps)
        self.reader = FrameReader()
        self.pending.clear()
        return ws

    def next_message(self) -> tuple[float, bytes]:
        """The next text/binary message and the time its last byte arrived.

        Answers pings on the way; raises :class:`ConnectionClosed` on close or EOF and
        ``TimeoutError`` when nothing arrives for ``stream_timeout``."""
        ws, rx = self.ws, self.rx
        if ws is None or ws.sock is None or rx is None:
            raise ConnectionClosed(None)
        pending = self.pending
        while True:
            while not pending:
                data, t, delay = rx.recv(_READ_SIZE)
                if not data:
                    raise ConnectionClosed(None)
                self.read_delays.append((t, delay))
                for op, payload in self.reader.feed(data):
                    pending.append((t, op, payload))
            t, op, payload = pending.popleft()
            if op in (OP_TEXT, OP_BINARY):
                return t, payload
            if op == OP_PING:
                ws.pong(payload)
            elif op == OP_CLOSE:
                self.drop()
                raise ConnectionClosed(close_code(payload))

    def ensure_connected(self) -> websocket.WebSocket:
        """Before a stream: take in what arrived while the user was thinking (answer pings,
        discard late frames of earlier streams), and reconnect if the server closed the idle
        connection meanwhile: an idle socket closed between streams is not a failed stream."""
        ws = self.ws
        if ws is None or ws.sock is None:
            return self.connect()
        sock = ws.sock
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0.0)
            while True:
                try:
                    data = sock.recv(_READ_SIZE)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    break
                if not data:
                    raise ConnectionClosed(None)
                for op, payload in self.reader.feed(data):
                    if op == OP_CLOSE:
                        raise ConnectionClosed(None)
                    if op == OP_PING:
                        ws.pong(payload)
                    elif op in (OP_TEXT, OP_BINARY):
                        self.idle_message(ws, payload)
            sock.settimeout(timeout)
        except (OSError, websocket.WebSocketException, ConnectionClosed, FrameError):
            self.drop()
            return self.connect()
        self.pending.clear()
        return ws

    def connect_for(
        self, record: StreamRecord, errors: tuple[type[BaseException], ...]
    ) -> websocket.WebSocket | None:
        """The open socket, or None with ``record`` ended as a connect error."""
        try:
            return self.ensure_connected()
        except errors as exc:
            self.drop()
            record.error_code = f"connect: {exc}"
            record.sent_at = time.perf_counter()
            record.sent_at_epoch = time.time()
            record.finish("error", time.perf_counter())
            return None

    def end_on_failure(
        self, record: StreamRecord, recorder: V1Recorder | TutorialRecorder, exc: BaseException
    ) -> None:
        """End a stream whose socket timed out, broke or spoke garbage; the socket is dropped."""
        now = time.perf_counter()
        if isinstance(exc, TimeoutError):
            record.finish("timeout", now)
        elif isinstance(exc, ClientProtocolError):
            record.error_code = f"protocol: {exc}"
            record.finish("error", now)
        else:
            recorder.connection_lost(now, exc.code if isinstance(exc, ConnectionClosed) else None)
        self.drop()

    def idle_message(self, ws: websocket.WebSocket, payload: bytes) -> None:
        """A message that arrived between streams (protocols override to answer pings)."""

    def drop(self) -> None:
        """Abrupt close, no close frame: what a lost network looks like to the server."""
        ws, self.ws = self.ws, None
        self.rx = None
        self.pending.clear()
        if ws is not None and ws.sock is not None:
            with contextlib.suppress(OSError):
                ws.sock.close()

    def on_stop(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close(timeout=1)


_WS_ERRORS = (OSError, websocket.WebSocketException, ConnectionClosed, FrameError)


class WsV1User(_WsBase):
    """Protocol v1 (``llm-stream.v1``): hello, chat, per-id tokens, cancel, resume."""

    transport = "ws"
    subprotocol = PROTOCOL

    def connect(self) -> websocket.WebSocket:
        ws = super().connect()
        _, data = self.next_message()
        event = decode_v1(data)
        if not isinstance(event, V1Hello):
            raise ClientProtocolError(f"expected hello, got {event!r}")
        return ws

    def idle_message(self, ws: websocket.WebSocket, payload: bytes) -> None:
        with contextlib.suppress(ClientProtocolError):
            event = decode_v1(payload)
            if isinstance(event, V1Ping):
                ws.send(encode_pong(event.ts))

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        recorder = V1Recorder()
        recorder.track(record)
        interrupt = self.plan_interrupt(can_drop=True)
        ws = self.connect_for(record, (*_WS_ERRORS, ClientProtocolError))
        if ws is None:
            return record
        record.sent_at_epoch = time.time()
        record.sent_at = time.perf_counter()
        frame = encode_chat(record.id, self.messages(), **self.options.request_fields())
        try:
            ws.send(frame)
            while not record.done:
                follower = _V1Follower(self, ws, record, recorder, interrupt)
                interrupt = None  # once per stream, whichever connection it falls on
                follower.follow()
                if follower.drop_requested:
                    ws = self._drop_and_resume(record)
        except (TimeoutError, *_WS_ERRORS, ClientProtocolError) as exc:
            self.end_on_failure(record, recorder, exc)
        return record

    def _drop_and_resume(self, record: StreamRecord) -> websocket.WebSocket:
        if record.stream_id is None or record.resume_token is None:
            raise ClientProtocolError("cannot resume: no start (stream_id, resume_token) seen")
        self.drop()
        ws = self.connect()
        record.reopen()
        last = record.arrivals[-1].index if record.arrivals else -1
        ws.send(encode_resume(record.stream_id, last, record.resume_token))
        return ws


_REACTORS: dict[int, Reactor] = {}


def _reactor() -> Reactor:
    """The process's reactor (one per process; created lazily, after gevent patched it)."""
    reactor = _REACTORS.get(os.getpid())
    if reactor is None:
        reactor = _REACTORS[os.getpid()] = Reactor()
    return reactor


class _V1Follower:
    """One stream of a :class:`WsV1User` on one connection, read by the process's
    :class:`~loadtests.reactor.Reactor`: frames are parsed and recorded in the reactor's
    greenlet; the user's greenlet only waits for the end (or a planned drop, which needs it
    to reconnect)."""

    __slots__ = (
        "drop_requested", "error", "interrupt", "last_data", "record", "recorder", "rx", "user",
        "wake", "ws",
    )  # fmt: skip

    def __init__(
        self,
        user: WsV1User,
        ws: websocket.WebSocket,
        record: StreamRecord,
        recorder: V1Recorder,
        interrupt: str | None,
    ) -> None:
        self.user, self.ws, self.record, self.recorder = user, ws, record, recorder
        self.interrupt = interrupt
        self.drop_requested = False
        self.error: BaseException | None = None
        self.wake = gevent.event.Event()
        self.last_data = time.perf_counter()
        self.rx: StampedSocket | None = None

    def follow(self) -> None:
        """Until the stream ends, a drop is due, the connection fails (raised) or nothing
        arrives for ``stream_timeout`` (``TimeoutError``)."""
        ws, user = self.ws, self.user
        if ws.sock is None:
            raise ConnectionClosed(None)
        # Frames the blocking reads already took off the socket (with the hello) come first.
        while user.pending and not self.finished():
            t, op, payload = user.pending.popleft()
            self.message(op, payload, t)
        if self.finished():
            return
        twin = nonblocking_twin(ws.sock)
        self.rx = StampedSocket(twin, user.options.kernel_stamps)
        reactor = _reactor()
        reactor.add(twin.fileno(), self)
        try:
            limit = user.options.stream_timeout_s
            while not self.finished():
                remaining = limit - (time.perf_counter() - self.last_data)
                if remaining <= 0:
                    raise TimeoutError(f"nothing received for {limit:g} s")
                self.wake.wait(remaining)
        finally:
            reactor.remove(twin.fileno())
            twin.close()
        error = self.error
        if error is not None:
            raise error

    def finished(self) -> bool:
        return self.record.done or self.drop_requested or self.error is not None

    # -- called in the reactor's greenlet ---------------------------------------------------
    def readable(self) -> None:
        rx = self.rx
        assert rx is not None
        delays = self.user.read_delays
        feed = self.user.reader.feed
        while not self.finished():
            try:
                data, t, delay = rx.recv(_READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                raise ConnectionClosed(None)
            delays.append((t, delay))
            self.last_data = t
            for op, payload in feed(data):
                self.message(op, payload, t)
                if self.drop_requested:
                    break  # the rest belongs to the connection being dropped
            if self.finished():
                self.wake.set()
                return
            if len(data) < _READ_SIZE:
                return

    def failed(self, exc: BaseException) -> None:
        self.error = exc
        self.wake.set()

    def message(self, op: int, payload: bytes, t: float) -> None:
        if op == OP_PING:
            self.ws.pong(payload)
            return
        if op == OP_CLOSE:
            raise ConnectionClosed(close_code(payload))
        if op not in (OP_TEXT, OP_BINARY):
            return
        event = decode_v1(payload)
        if isinstance(event, V1Ping):
            self.ws.send(encode_pong(event.ts))
            return
        record = self.record
        self.recorder.handle(event, t)
        interrupt = self.interrupt
        if (
            interrupt is not None
            and not record.done
            and len(record.arrivals) >= self.user.options.interrupt_after
        ):
            self.interrupt = None
            if interrupt == "cancel":
                record.cancelled_at = time.perf_counter()
                record.cancelled_at_epoch = time.time()
                self.ws.send(encode_cancel(record.id))
            else:
                self.drop_requested = True


class TutorialUser(_WsBase):
    """The tutorial-shaped protocol (no subprotocol; ends with ``end`` or in-band ``[END]``)."""

    transport = "tutorial"

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        recorder = TutorialRecorder()
        perf = time.perf_counter
        ws = self.connect_for(record, _WS_ERRORS)
        if ws is None:
            return record
        record.sent_at_epoch = time.time()
        record.sent_at = perf()
        recorder.begin(record, record.sent_at)
        try:
            ws.send(encode_tutorial(self.messages(), **self.options.request_fields()))
            while not record.done:
                t, data = self.next_message()
                recorder.handle(decode_tutorial(data), t)
        except (TimeoutError, *_WS_ERRORS, ClientProtocolError) as exc:
            self.end_on_failure(record, recorder, exc)
        return record


# --- HTTP ----------------------------------------------------------------------------------


def _streamer_for(user: StreamingUser) -> HttpStreamClient:
    """The HTTP client of a user's streamed requests (its reads stamped like the frames)."""
    return HttpStreamClient(
        user.http_base,
        timeout=user.options.stream_timeout_s,
        kernel_stamps=user.options.kernel_stamps,
        read_delays=user.read_delays,
    )


class _HttpBase(StreamingUser):
    """``requests`` for plain calls; streamed bodies through :class:`HttpStreamClient`, whose
    chunks carry the kernel's receive time like the WebSocket users' frames."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.session = requests.Session()
        self._streamer: HttpStreamClient | None = None

    @property
    def streamer(self) -> HttpStreamClient:
        if self._streamer is None:
            self._streamer = _streamer_for(self)
        return self._streamer

    def on_stop(self) -> None:
        self.session.close()
        if self._streamer is not None:
            self._streamer.close()

    def create_stream(self, record: StreamRecord) -> dict[str, Any]:
        body = {"id": record.id, "messages": self.messages(), **self.options.request_fields()}
        response = self.session.post(
            f"{self.http_base}/v1/streams", json=body, timeout=self.options.stream_timeout_s
        )
        record.http_status = response.status_code
        if response.status_code != 201:
            raise StreamError(f"POST /v1/streams -> {response.status_code}: {response.text[:200]}")
        created: dict[str, Any] = response.json()
        record.stream_id = created.get("stream_id")
        record.resume_token = created.get("resume_token")
        return created

    def cancel(self, record: StreamRecord) -> None:
        """``DELETE /v1/streams/{id}``; a 409 means it had already ended (not an error)."""
        response = self.session.delete(
            f"{self.http_base}/v1/streams/{record.stream_id}",
            headers={"X-Resume-Token": record.resume_token or ""},
            timeout=self.options.stream_timeout_s,
        )
        if response.status_code not in (200, 409):
            raise StreamError(f"DELETE stream -> {response.status_code}")

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.http_base}{path}"

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        perf = time.perf_counter
        record.sent_at_epoch = time.time()
        record.sent_at = perf()
        try:
            self.read(record)
            if not record.done:
                record.finish("disconnected", perf())
        except (requests.Timeout, TimeoutError):
            record.finish("timeout", perf())
        except (requests.RequestException, OSError) as exc:
            record.error_code = type(exc).__name__
            record.finish("disconnected", perf())
        except (StreamError, ClientProtocolError, ValueError) as exc:
            record.error_code = str(exc)[:200]
            record.finish("error", perf())
        return record

    def read(self, record: StreamRecord) -> None:
        raise NotImplementedError


class SseUser(_HttpBase):
    """``POST /v1/streams`` then read ``GET .../events`` as server-sent events."""

    transport = "sse"

    def read(self, record: StreamRecord) -> None:
        created = self.create_stream(record)
        path = _path(created.get("events_url") or f"/v1/streams/{record.stream_id}/events")
        headers = {"Accept": "text/event-stream", "X-Resume-Token": record.resume_token or ""}
        parser = SSEParser()
        recorder = SSERecorder(record)
        interrupt = self.plan_interrupt(can_drop=True)
        with self.streamer.request("GET", path, headers=headers) as response:
            if response.status_code != 200:
                raise StreamError(f"GET events -> {response.status_code}")
            for chunk, t in response.chunks():
                for item in parser.feed(chunk):
                    recorder.handle(item, t)
                if record.done:
                    response.drain()
                    return
                if interrupt is not None and len(record.arrivals) >= self.options.interrupt_after:
                    if interrupt == "cancel":
                        # The protocol's cancel; the stream then ends with a `cancelled` event.
                        interrupt = None
                        record.cancelled_at = time.perf_counter()
                        record.cancelled_at_epoch = time.time()
                        self.cancel(record)
                        continue
                    # drop: close this response, reconnect with Last-Event-ID
                    interrupt = None
                    response.close()
                    record.reopen()
                    self._resume(record, path, headers, recorder)
                    return

    def _resume(
        self, record: StreamRecord, path: str, headers: dict[str, str], recorder: SSERecorder
    ) -> None:
        parser = SSEParser()
        headers = {**headers, "Last-Event-ID": record.last_event_id or "-1"}
        with self.streamer.request("GET", path, headers=headers) as response:
            if response.status_code == 204:
                # The stream ended while we were away and we had seen every token.
                record.finish("completed", time.perf_counter())
                return
            if response.status_code != 200:
                raise StreamError(f"GET events (resume) -> {response.status_code}")
            for chunk, t in response.chunks():
                for item in parser.feed(chunk):
                    recorder.handle(item, t)
                if record.done:
                    return


class OpenAIUser(_HttpBase):
    """Straight to an OpenAI-compatible provider (``POST /v1/chat/completions``, streamed):
    the baseline the relay benchmark subtracts. Each content delta is one token."""

    transport = "openai"

    def read(self, record: StreamRecord) -> None:
        body = {"messages": self.messages(), "stream": True, **self.options.request_fields()}
        body.setdefault("model", "mock")
        parser = SSEParser()
        with self.streamer.request("POST", "/v1/chat/completions", json_body=body) as response:
            record.http_status = response.status_code
            if response.status_code != 200:
                detail = response.text()[:200]
                raise StreamError(f"POST /v1/chat/completions -> {response.status_code}: {detail}")
            for chunk, t in response.chunks():
                for item in parser.feed(chunk):
                    if not isinstance(item, SSEEvent):
                        continue
                    if item.data == "[DONE]":
                        record.finish("completed", t)
                        response.drain()
                        return
                    data = json.loads(item.data)
                    if "error" in data:
                        raise StreamError(f"provider error: {str(data['error'])[:200]}")
                    for choice in data.get("choices", []):
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            record.add(len(record.arrivals), content, t)
                        if choice.get("finish_reason"):
                            record.finish_reason = choice["finish_reason"]


def _path(url: str) -> str:
    """The path and query of a URL the server handed back (absolute or not)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class BlockingUser(_HttpBase):
    """``POST /v1/chat/blocking``: the whole answer at once (TTFT = E2E by construction)."""

    transport = "blocking"

    def read(self, record: StreamRecord) -> None:
        body = {"messages": self.messages(), **self.options.request_fields()}
        response = self.session.post(
            f"{self.http_base}/v1/chat/blocking", json=body, timeout=self.options.stream_timeout_s
        )
        t = time.perf_counter()
        record.http_status = response.status_code
        if response.status_code != 200:
            raise StreamError(f"POST /v1/chat/blocking -> {response.status_code}")
        data = response.json()
        tokens = data.get("tokens")
        pieces: list[str]
        if isinstance(tokens, list):
            pieces = [str(x) for x in tokens]
        else:
            count = tokens if isinstance(tokens, int) else 1
            pieces = [str(data.get("content", ""))] + [""] * max(0, count - 1)
        for i, piece in enumerate(pieces):
            record.add(i, piece, t)
        record.finish_reason = data.get("finish_reason")
        record.usage = data.get("usage")
        record.finish("completed", t)


class PollingUser(_HttpBase):
    """``POST /v1/streams`` then ``GET .../tokens?after=N`` every ``poll_interval`` seconds."""

    transport = "polling"

    def read(self, record: StreamRecord) -> None:
        created = self.create_stream(record)
        url = self._url(created.get("tokens_url") or f"/v1/streams/{record.stream_id}/tokens")
        headers = {"X-Resume-Token": record.resume_token or ""}
        after = -1
        perf = time.perf_counter
        deadline = perf() + self.options.stream_timeout_s
        cancel = self.plan_interrupt(can_drop=False) == "cancel"
        while True:
            response = self.session.get(
                url, params={"after": after}, headers=headers, timeout=self.options.stream_timeout_s
            )
            t = perf()
            if response.status_code != 200:
                raise StreamError(f"GET tokens -> {response.status_code}")
            data = response.json()
            for token in data.get("tokens", []):
                index = int(token["index"])
                record.add(index, str(token.get("content", "")), t)
                after = max(after, index)
            if data.get("state") == "cancelled":
                record.finish("cancelled", t)
                return
            if data.get("error"):
                err = data["error"]
                record.error_code = err.get("code") if isinstance(err, dict) else str(err)
                record.finish("error", t)
                return
            if data.get("done"):
                record.finish_reason = data.get("finish_reason")
                record.usage = data.get("usage")
                record.finish("completed", t)
                return
            if cancel and len(record.arrivals) >= self.options.interrupt_after:
                cancel = False
                record.cancelled_at = perf()
                record.cancelled_at_epoch = time.time()
                self.cancel(record)
                continue  # the next poll shows the stream's end
            if t > deadline:
                record.finish("timeout", t)
                return
            # Polling is the one place a sleep is the behaviour under test.
            time.sleep(self.options.poll_interval_s)


# --- any server a target profile describes ------------------------------------------------


@functools.cache
def _profile(spec: str) -> Profile:
    return load_profile(spec)


class ProfileUser(_WsBase):
    """Any server a target profile describes (``--sh-target-profile``; default ``tutorial``):
    a WebSocket kept across streams, or one streamed HTTP request per stream (SSE, lines or
    chunks), read with the profile's rules by the same recorder the scenarios use. A cancel
    (``--sh-cancel-rate``) sends the profile's cancel message."""

    transport = "profile"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.profile = _profile(self.options.target_profile)
        self._streamer: HttpStreamClient | None = None

    def values(self, record: StreamRecord) -> RequestValues:
        return RequestValues(
            prompt=self.options.prompt,
            model=self.options.model or "mock",
            messages=self.messages(),
            client_id=self.client_id,
            stream_id=record.id,
            max_tokens=self.options.max_tokens,
        )

    def request_headers(self, values: RequestValues) -> dict[str, str]:
        return {**render_headers(self.profile.headers, values), **dict(self.options.headers)}

    def payload(self, values: RequestValues) -> tuple[bytes | None, Any]:
        if self.profile.text is not None:
            return render_text(self.profile.text, values).encode(), None
        if self.profile.body is not None:
            return None, render(self.profile.body, values)
        return None, None

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        recorder = ProfileRecorder(self.profile)
        if self.profile.transport == "websocket":
            self._run_ws(record, recorder)
        else:
            self._run_http(record, recorder)
        if not record.done:
            record.finish("timeout", time.perf_counter())
        return record

    # -- WebSocket

    def connect(self) -> websocket.WebSocket:
        values = self.values(StreamRecord(transport="ws", id="connect"))
        kwargs: dict[str, Any] = {
            "timeout": self.options.stream_timeout_s,
            "header": [f"{k}: {v}" for k, v in self.request_headers(values).items()],
        }
        if self.profile.subprotocol:
            kwargs["subprotocols"] = [self.profile.subprotocol]
        ws = websocket.create_connection(
            self.ws_base + render_url(self.profile.url, values), **kwargs
        )
        if ws.sock is None:
            raise ConnectionClosed(None)
        self.ws = ws
        self.rx = StampedSocket(ws.sock, self.options.kernel_stamps)
        self.reader = FrameReader()
        self.pending.clear()
        return ws

    def _run_ws(self, record: StreamRecord, recorder: ProfileRecorder) -> None:
        profile = self.profile
        perf = time.perf_counter
        ws = self.connect_for(record, _WS_ERRORS)
        if ws is None:
            return
        values = self.values(record)
        text, body = self.payload(values)
        cancel = profile.cancel_message is not None and self.plan_interrupt(False) == "cancel"
        record.sent_at_epoch, record.sent_at = time.time(), perf()
        recorder.begin(record, record.sent_at)
        deadline = record.sent_at + self.options.stream_timeout_s
        idle_s = profile.idle_end_ms / 1000 if profile.idle_end_ms else None
        try:
            ws.send(text.decode() if text is not None else json.dumps(body))
            if idle_s is not None and ws.sock is not None:
                # Short reads, so that a silence can end the answer (the profile's idle end).
                ws.sock.settimeout(min(idle_s / 4, 0.05))
            while not record.done:
                try:
                    t, data = self.next_message()
                except TimeoutError:
                    now = perf()
                    if recorder.idle(now):
                        break
                    if now > deadline:
                        raise
                    continue
                recorder.handle(Frame(data.decode("utf-8", errors="replace")), t)
                if cancel and len(record.arrivals) >= self.options.interrupt_after:
                    cancel = False
                    record.cancelled_at, record.cancelled_at_epoch = perf(), time.time()
                    message = render(profile.cancel_message, values)
                    ws.send(message if isinstance(message, str) else json.dumps(message))
            if ws.sock is not None:
                ws.sock.settimeout(self.options.stream_timeout_s)
        except TimeoutError:
            record.finish("timeout", perf())
            self.drop()
        except ConnectionClosed as exc:
            recorder.closed(perf(), clean=exc.code == 1000, close_code=exc.code or 1006)
            self.drop()
        except _WS_ERRORS:
            recorder.closed(perf(), clean=False, close_code=1006)
            self.drop()

    # -- HTTP

    @property
    def streamer(self) -> HttpStreamClient:
        if self._streamer is None:
            self._streamer = _streamer_for(self)
        return self._streamer

    def _run_http(self, record: StreamRecord, recorder: ProfileRecorder) -> None:
        values = self.values(record)
        text, body = self.payload(values)
        headers = self.request_headers(values)
        if self.profile.transport == "sse":
            headers.setdefault("Accept", "text/event-stream")
        sse = SSEParser() if self.profile.transport == "sse" else None
        cutter = LineSplitter() if self.profile.framing == "lines" else ChunkDecoder()

        def frames(items: list[Any]) -> list[Frame]:
            out = [Frame(i.data, i.event) for i in items if isinstance(i, SSEEvent)]
            return out + [Frame(i) for i in items if isinstance(i, str)]

        perf = time.perf_counter
        record.sent_at_epoch, record.sent_at = time.time(), perf()
        recorder.begin(record, record.sent_at)
        try:
            with self.streamer.request(
                self.profile.method,
                render_url(self.profile.url, values),
                json_body=body,
                content=text,
                headers=headers,
            ) as response:
                record.http_status = response.status_code
                if not 200 <= response.status_code < 300:
                    record.error_code = f"http_{response.status_code}"
                    record.finish("error", perf())
                    response.close()
                    return
                for chunk, t in response.chunks():
                    items = sse.feed(chunk) if sse is not None else cutter.feed(chunk)
                    for frame in frames(items):
                        recorder.handle(frame, t)
                    if record.done:
                        response.close()  # a client stops reading at the end
                        return
                rest = sse.feed_eof() if sse is not None else cutter.feed_eof()
                for frame in frames(list(rest)):
                    recorder.handle(frame, perf())
                recorder.closed(perf(), clean=True)
        except (HttpStreamError, OSError) as exc:
            recorder.closed(perf(), clean=False)
            record.error_message = str(exc)[:200]

    def on_stop(self) -> None:
        super().on_stop()
        if self._streamer is not None:
            self._streamer.close()

"""The asyncio TCP engine: proxies, connections, links and toxic stages.

Shape (mirrors Toxiproxy's ``proxy.go`` / ``link.go``)::

    client ──► [Side] ──upstream Link: Stage ► Stage ► sink──► [Side] ──► upstream server
    client ◄── [Side] ◄─sink ◄ Stage ◄ Stage :downstream Link◄── [Side] ◄── upstream server

A :class:`Stage` runs one toxic on one link. It holds no task: it asks the pure toxic logic
(``toxics.py``) for a plan and waits for the plan's times with ``loop.call_at``, so adding,
updating and removing a toxic on a live connection is a synchronous edit of the chain done
from the API handler, with the real server's flushing rules:

- update: the stage is interrupted (what it holds goes out at once), then restarted with the
  merged attributes (new toxicity draw; limit_data keeps its byte count);
- add: the last stage is interrupted, its output re-pointed at the new stage, restarted;
- remove: what the stage holds and its inbox go out at once, the previous stage is restarted;
  removing a ``timeout`` closes the link instead, and removing a ``reset_peer`` that is
  counting down resets the connection at once. Removal never waits, so ``/reset`` lets go of
  connections held by toxic values that never end (``latency`` of 2^63-1 ms).

Changes of a proxy's address are prepared in full (``listeners.py``: resolved, bound, a
server ready) before the running proxy is touched, so a failed ``PATCH`` or ``/populate``
leaves every proxy as it was.

A link whose chain ends (EOF reaches the sink) closes its destination socket; the other link
then reads EOF from that socket, flushes its chain and closes its own destination, as in Go.
Sockets use asyncio protocols (no reader tasks); flow control pauses the source when the
destination's write buffer or the link's buffered bytes are too high.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from scenarios.faultproxy.addresses import parse_address
from scenarios.faultproxy.errors import ApiError
from scenarios.faultproxy.listeners import Listener, ResolvedAddress, open_listener, resolve_listen
from scenarios.faultproxy.models import ProxyInput, ProxyUpdate, ToxicConfig
from scenarios.faultproxy.timers import Clock, PreciseClock, TimerHandle
from scenarios.faultproxy.toxics import (
    EOF,
    Action,
    Chunk,
    Close,
    Emit,
    Eof,
    Item,
    LimitDataState,
    Reset,
    RunningToxic,
    make_toxic,
    noop,
)

__all__ = ["Connection", "Engine", "Link", "Proxy", "Stage"]

#: Pause reading the source when this many bytes wait inside a link's toxics.
LINK_BUFFER_LIMIT: Final = 4 * 1024 * 1024
# With a plain event loop as the clock (no timerfd), the selector rounds its timeout up to
# whole milliseconds, so a timer set for ``at`` fires somewhere in [at, at + 1 ms). Timers are
# then set half a millisecond early and an action counts as due within 0.6 ms: delivery error
# is about +-0.5 ms instead of 0..+1 ms. A precise clock (``timers.PreciseClock``) fires on
# time, so nothing is set early and only actions due within its coalescing window go together.
_TIMER_LEAD: Final = 0.0005
_EPS: Final = 0.0006


class Stage:
    """One toxic running on one link (Go's ToxicStub), driven by loop timers."""

    def __init__(self, link: Link, config: ToxicConfig, output: Callable[[Item], None]) -> None:
        self.link = link
        self.loop: Clock = link.loop
        precise = getattr(self.loop, "precise", False)
        self.lead = 0.0 if precise else _TIMER_LEAD
        self.eps = PreciseClock.COALESCE if precise else _EPS
        self.config = config
        self.output = output
        self.rng = random.Random(link.rng_key(config))
        self.limit_state = LimitDataState()
        self.inbox: deque[tuple[Item, float]] = deque()
        self.held: deque[Action] = deque()
        self.current: Item | None = None
        self.planned_at = -math.inf
        self.until = -math.inf
        self.timer: TimerHandle | None = None
        self.waiting_forever = False
        self.deadline_timer: TimerHandle | None = None
        self.closed = False
        self.buffered = 0
        self.logic: RunningToxic = noop()
        self._start()

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        # Toxicity is drawn each time the toxic (re)starts on the link, as Go's stub.Run does.
        active = self.rng.random() < self.config.toxicity
        if active:
            self.logic = make_toxic(
                self.config.type, self.config.attributes, self.rng, self.limit_state
            )
        else:
            self.logic = noop()
        deadline = self.logic.deadline(self.loop.time())
        if deadline is not None:
            self.deadline_timer = self.loop.call_at(deadline.at, self._on_deadline)

    def _busy(self) -> bool:
        return self.timer is not None or self.waiting_forever

    def _cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting_forever = False
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None

    def dispose(self) -> None:
        """Stop without flushing (the connection is being torn down)."""
        self._cancel_timers()
        self.closed = True
        self.inbox.clear()
        self.held.clear()
        self.buffered = 0

    def _pending_reset(self) -> bool:
        return self.logic.uninterruptible and any(isinstance(a, Reset) for a in self.held)

    def _flush_held(self) -> None:
        """Interrupt: whatever the toxic holds goes out now (Go: "don't drop data")."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting_forever = False
        terminal = False
        held, self.held = self.held, deque()
        for action in held:
            if isinstance(action, Emit):
                self.buffered -= len(action.chunk.data)
                self.output(action.chunk)
            else:
                terminal = True
        if terminal and isinstance(self.current, Eof):
            # slow_close interrupted while delaying the close: the restarted toxic sees EOF again.
            self.inbox.appendleft((EOF, self.loop.time()))
        self.until = -math.inf

    def restart(
        self, config: ToxicConfig, new_output: Callable[[Item], None] | None = None
    ) -> None:
        """Interrupt and run again (update, or the neighbour of an added toxic)."""
        self.config = config
        if self.closed or self._pending_reset():
            # Go blocks the interrupt until reset_peer fires; the reset still happens.
            if new_output is not None:
                self.output = new_output
            return
        self._flush_held()
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        if new_output is not None:
            self.output = new_output
        self._start()
        self._process()

    def remove(self) -> None:
        """Take the stage out of its link, letting go of whatever it holds."""
        if self.closed:
            return
        if self.logic.closes_on_removal:
            self._close()
            return
        if self._pending_reset():
            # The reset was coming (Go's removal waits for it, however long): do it now, so
            # that /reset or a DELETE always lets go of the connection.
            self.link.conn.reset()
            return
        self._flush_held()
        self._cancel_timers()
        for item, _ in self.inbox:
            self.output(item)
            if isinstance(item, Eof):
                break
        self.inbox.clear()
        self.buffered = 0
        self.closed = True

    # -- data path -----------------------------------------------------------------------

    def push(self, item: Item) -> None:
        if self.closed:
            return
        self.inbox.append((item, self.loop.time()))
        if isinstance(item, Chunk):
            self.buffered += len(item.data)
        if not self._busy():
            self._process()

    def _on_timer(self) -> None:
        self.timer = None
        self._process()

    def _on_deadline(self) -> None:
        self.deadline_timer = None
        if not self.closed:
            self._close()

    def _wait_until(self, at: float) -> None:
        if at == math.inf:
            self.waiting_forever = True
        else:
            self.timer = self.loop.call_at(at - self.lead, self._on_timer)

    def _process(self) -> None:
        now = self.loop.time()
        eps = self.eps
        while not self.closed:
            while self.held:
                action = self.held[0]
                if action.at > now + eps:
                    self._wait_until(action.at)
                    return
                self.held.popleft()
                if isinstance(action, Emit) and action.at > self.planned_at + eps:
                    # A delivery the toxic scheduled for later: how late did it leave?
                    self.link.proxy.engine.lateness.observe(now - action.at)
                if not self._apply(action):
                    return
            if self.until > now + eps:
                self._wait_until(self.until)
                return
            if not self.inbox:
                self.current = None
                return
            item, arrived = self.inbox.popleft()
            # Start where the previous item ended if this one was already waiting: timer
            # lateness then does not accumulate into the pacing.
            start = min(max(arrived, self.until), now)
            self.current = item
            self.planned_at = start
            if isinstance(item, Chunk):
                self.buffered -= len(item.data)
                plan = self.logic.on_chunk(item, start)
            else:
                plan = self.logic.on_eof(start)
            for action in plan.actions:
                if isinstance(action, Emit):
                    self.buffered += len(action.chunk.data)
            self.held.extend(plan.actions)
            self.until = plan.until
            self.link.on_progress()

    def _apply(self, action: Action) -> bool:
        """Carry out one action; False when the stage is closed by it."""
        if isinstance(action, Emit):
            self.buffered -= len(action.chunk.data)
            self.output(action.chunk)
            self.link.on_progress()
            return True
        if isinstance(action, Close):
            self._close()
        else:
            self.link.conn.reset()
        return False

    def _close(self) -> None:
        """Go's stub.Close(): the output ends, later input is ignored."""
        self._cancel_timers()
        self.closed = True
        self.inbox.clear()
        self.held.clear()
        self.buffered = 0
        self.output(EOF)
        self.link.on_progress()


class Link:
    """One direction of a connection: source side -> chain of stages -> destination side."""

    def __init__(
        self, conn: Connection, upstream: bool, src: Side, dst: Side, configs: Iterable[ToxicConfig]
    ) -> None:
        self.conn = conn
        self.proxy = conn.proxy
        self.loop: Clock = conn.loop
        self.upstream = upstream
        self.direction = "upstream" if upstream else "downstream"
        self.src = src
        self.dst = dst
        self.done = False
        self.paused_for_buffer = False
        self.stages: list[Stage] = []
        # A new link starts every toxic once (one toxicity draw each), wired back to front.
        output: Callable[[Item], None] = self.sink
        for config in reversed(list(configs)):
            stage = Stage(self, config, output)
            self.stages.insert(0, stage)
            output = stage.push

    def rng_key(self, config: ToxicConfig) -> str:
        seed = config.seed
        if seed is None:
            seed = self.proxy.seed if self.proxy.seed is not None else self.proxy.engine.seed
        return f"{seed}/{self.proxy.name}/{self.conn.index}/{self.direction}/{config.name}"

    # -- chain edits ---------------------------------------------------------------------

    def add(self, config: ToxicConfig) -> None:
        if self.done:
            return
        stage = Stage(self, config, self.sink)
        if self.stages:
            last = self.stages[-1]
            last.restart(last.config, new_output=stage.push)
        self.stages.append(stage)

    def update(self, config: ToxicConfig) -> None:
        for stage in self.stages:
            if stage.config.name == config.name:
                stage.restart(config)
                return

    def remove(self, name: str) -> None:
        for index, stage in enumerate(self.stages):
            if stage.config.name != name:
                continue
            stage.remove()
            del self.stages[index]
            if index > 0:
                prev = self.stages[index - 1]
                prev.output = stage.output
                prev.restart(prev.config)
            self.on_progress()
            return

    def dispose(self) -> None:
        for stage in self.stages:
            stage.dispose()

    # -- data path -----------------------------------------------------------------------

    def feed(self, item: Item) -> None:
        if isinstance(item, Chunk):
            self.proxy.count(self.direction, "received", len(item.data))
        if self.stages:
            self.stages[0].push(item)
        else:
            self.sink(item)
        self.update_flow()

    def sink(self, item: Item) -> None:
        if self.done:
            return
        if isinstance(item, Chunk):
            if item.data and self.dst.write(item.data):
                self.proxy.count(self.direction, "sent", len(item.data))
            return
        self.done = True
        self.dst.close()

    def buffered(self) -> int:
        return sum(stage.buffered for stage in self.stages)

    def on_progress(self) -> None:
        if self.paused_for_buffer:
            self.update_flow()

    def update_flow(self) -> None:
        over = bool(self.stages) and self.buffered() > LINK_BUFFER_LIMIT
        self.paused_for_buffer = over
        self.src.set_paused(self.direction, over or self.dst.write_paused)


class Side(asyncio.Protocol):
    """One socket of a connection (the client's or the upstream server's)."""

    def __init__(self, conn: Connection, pause_on_connect: bool = False) -> None:
        self.conn = conn
        self.pause_on_connect = pause_on_connect
        self.transport: asyncio.Transport | None = None
        self.link_in: Link | None = None  # the link this socket feeds
        self.link_out: Link | None = None  # the link that writes to this socket
        self.write_paused = False
        self.reading_paused = False
        self.lost = False
        self.eof_fed = False
        self.pending: list[Item] = []  # data read before the links exist

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if self.pause_on_connect and self.link_in is None:
            # Nothing is read from the client until the upstream connection exists. (uvloop
            # may report the client's connection after the upstream one is already made.)
            self.transport.pause_reading()
            self.reading_paused = True

    def data_received(self, data: bytes) -> None:
        chunk = Chunk(data, self.conn.loop.time())
        if self.link_in is None:
            self.pending.append(chunk)
        else:
            self.link_in.feed(chunk)

    def eof_received(self) -> bool:
        # Keep the socket open for the other direction; the links decide when it closes.
        self._feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._feed_eof()
        self.conn.side_lost()

    def _feed_eof(self) -> None:
        if self.eof_fed:
            return
        self.eof_fed = True
        if self.link_in is None:
            self.pending.append(EOF)
        else:
            self.link_in.feed(EOF)

    def start(self, link_in: Link, link_out: Link) -> None:
        self.link_in = link_in
        self.link_out = link_out
        pending, self.pending = self.pending, []
        for item in pending:
            link_in.feed(item)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.link_out is not None:
            self.link_out.update_flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.link_out is not None:
            self.link_out.update_flow()

    def set_paused(self, direction: str, paused: bool) -> None:
        if self.transport is None or self.lost or paused == self.reading_paused:
            return
        self.reading_paused = paused
        with contextlib.suppress(RuntimeError):
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.lost or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self, linger_zero: bool) -> None:
        if self.transport is None:
            return
        if linger_zero:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class Connection:
    """A client connection and its upstream connection, joined by two links."""

    def __init__(self, proxy: Proxy, index: int) -> None:
        self.proxy = proxy
        #: The data path's clock and timers (sub-millisecond where the platform allows).
        self.loop: Clock = proxy.engine.clock
        self.index = index
        self.client = Side(self, pause_on_connect=True)
        self.server: Side | None = None
        self.up: Link | None = None
        self.down: Link | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.finished = False

    def links(self) -> list[Link]:
        return [link for link in (self.up, self.down) if link is not None]

    async def connect(self, upstream: str) -> None:
        try:
            # Parsed only now, as the real server dials it: any upstream text is accepted.
            parts, port = parse_address(upstream)
            if port is None:
                port = socket.getservbyname(parts.port, "tcp")
            # Go dials the local system when the host is empty (":8000").
            _, server = await self.proxy.loop.create_connection(
                lambda: Side(self), parts.host or "localhost", port
            )
        except (OSError, ApiError, asyncio.CancelledError):
            # Go: "Unable to open connection to upstream", the client is closed.
            self.client.close()
            self.finish()
            return
        finally:
            self.connect_task = None
        assert isinstance(server, Side)
        if self.finished or self.client.lost:
            server.close()
            self.finish()
            return
        self.server = server
        self.up = Link(self, True, self.client, server, self.proxy.toxics["upstream"])
        self.down = Link(self, False, server, self.client, self.proxy.toxics["downstream"])
        self.client.start(self.up, self.down)
        server.start(self.down, self.up)
        self.client.set_paused("upstream", False)

    def reset(self) -> None:
        """reset_peer fired: RST both peers (SO_LINGER 0, as Go sets on reset_peer links)."""
        for link in self.links():
            link.dispose()
        self.client.abort(linger_zero=True)
        if self.server is not None:
            self.server.abort(linger_zero=True)

    def close(self) -> None:
        """Proxy disabled or deleted: close both sockets (buffered toxic data is lost)."""
        if self.connect_task is not None:
            self.connect_task.cancel()
        for link in self.links():
            link.dispose()
        self.client.close()
        if self.server is not None:
            self.server.close()
        if self.connect_task is None and self.server is None:
            self.finish()

    def side_lost(self) -> None:
        server_gone = self.server is None or self.server.lost
        if self.client.lost and server_gone and self.connect_task is None:
            self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for link in self.links():
            link.dispose()
        self.proxy.connections.discard(self)


class Proxy:
    """A named listener forwarding to ``upstream`` with its toxic chains."""

    def __init__(self, engine: Engine, spec: ProxyInput) -> None:
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop = engine.loop
        self.name = spec.name
        self.listen = spec.listen
        self.upstream = spec.upstream
        self.seed = spec.seed
        self.enabled = False
        self.toxics: dict[str, list[ToxicConfig]] = {"upstream": [], "downstream": []}
        self.listener: Listener | None = None
        self.connections: set[Connection] = set()
        self.accepted = 0
        self.bytes: dict[tuple[str, str], int] = {
            (d, k): 0 for d in ("upstream", "downstream") for k in ("received", "sent")
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxic_list()],
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def toxic_list(self) -> list[ToxicConfig]:
        return [*self.toxics["upstream"], *self.toxics["downstream"]]

    def find_toxic(self, name: str) -> ToxicConfig | None:
        for toxic in self.toxic_list():
            if toxic.name == name:
                return toxic
        return None

    def count(self, direction: str, kind: str, n: int) -> None:
        self.bytes[direction, kind] += n

    # -- listener ------------------------------------------------------------------------

    async def start(self) -> None:
        """Go's start(): bind ``listen`` (500 with Go's message when that fails)."""
        if not self.enabled:
            await self.serve(await open_listener(self.loop, self.listen))

    async def serve(self, listener: Listener) -> None:
        """Accept on ``listener`` (bound and prepared, so this cannot fail)."""
        self.listener = listener
        self.listen = listener.shown
        self.enabled = True
        await listener.serve(self._accept)

    def _accept(self) -> Side:
        self.accepted += 1
        conn = Connection(self, self.accepted)
        self.connections.add(conn)
        conn.connect_task = self.loop.create_task(conn.connect(self.upstream))
        return conn.client

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()

    def stop(self) -> None:
        """Go's stop(): close the listener and every live connection."""
        if not self.enabled:
            return
        self.enabled = False
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.close_connections()

    def listens_on(self, resolved: ResolvedAddress) -> bool:
        """Whether our own listener may be what keeps ``resolved`` from binding (same port)."""
        return self.listener is not None and resolved.port == self.listener.port

    async def replace_listener(self, address: str, resolved: ResolvedAddress) -> Listener:
        """Bind ``address`` on the port we listen on (127.0.0.1:P to 0.0.0.0:P): our socket
        goes first; if the new bind still fails the old address is bound again and the error
        raised, the live connections untouched either way."""
        assert self.listener is not None
        self.listener.close()
        self.listener = None
        try:
            return await open_listener(self.loop, address, resolved)
        except ApiError:
            try:
                await self.serve(await open_listener(self.loop, self.listen))
            except ApiError:
                self.stop()  # the old port was taken in between: down, as the real server
            raise

    def hand_over_listener(self) -> Listener:
        """Give the listener to the proxy replacing this one on its address; then stopped."""
        listener = self.listener
        assert listener is not None
        self.listener = None
        self.stop()
        return listener

    # -- toxics --------------------------------------------------------------------------

    def live_links(self, stream: str) -> list[Link]:
        links: list[Link] = []
        for conn in self.connections:
            link = conn.up if stream == "upstream" else conn.down
            if link is not None:
                links.append(link)
        return links

    def add_toxic(self, config: ToxicConfig) -> None:
        stream = "upstream" if config.upstream else "downstream"
        self.toxics[stream].append(config)
        for link in self.live_links(stream):
            link.add(config)

    def update_toxic(self, config: ToxicConfig) -> None:
        stream = "upstream" if config.upstream else "downstream"
        chain = self.toxics[stream]
        for i, toxic in enumerate(chain):
            if toxic.name == config.name:
                chain[i] = config
        for link in self.live_links(stream):
            link.update(config)

    def remove_toxic(self, name: str) -> None:
        for stream, chain in self.toxics.items():
            for i, toxic in enumerate(chain):
                if toxic.name == name:
                    del chain[i]
                    for link in self.live_links(stream):
                        link.remove(name)
                    return

    def remove_all_toxics(self) -> None:
        for toxic in self.toxic_list():
            self.remove_toxic(toxic.name)


class Histogram:
    """Fixed-bucket histogram (Prometheus style) of seconds."""

    # Negative bounds count early deliveries; the fine ones resolve the timerfd's accuracy.
    BUCKETS: Final = (
        -0.0005,
        -0.0001,
        0.0001,
        0.00025,
        0.0005,
        0.001,
        0.002,
        0.005,
        0.01,
        0.05,
        math.inf,
    )

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        self.counts[bisect.bisect_left(self.BUCKETS, value)] += 1

    def lines(self, metric: str) -> list[str]:
        out: list[str] = []
        running = 0
        for bound, n in zip(self.BUCKETS, self.counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{metric}_bucket{{le="{le}"}} {running}')
        out += [f"{metric}_sum {self.sum!r}", f"{metric}_count {self.count}"]
        return out


class Engine:
    """The collection of proxies (Go's ProxyCollection) plus the server-wide seed."""

    def __init__(self, seed: int = 0, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.seed = seed
        self.loop = loop or asyncio.get_running_loop()
        self.clock = PreciseClock(self.loop)
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        #: How late scheduled deliveries (latency, bandwidth, slicer) left, in seconds.
        self.lateness = Histogram()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    async def create(self, spec: ProxyInput) -> Proxy:
        async with self.lock:
            if spec.name in self.proxies:
                raise ApiError("proxy already exists", 409)
            proxy = Proxy(self, spec)
            if spec.enabled:
                await proxy.start()
            else:
                # Not bound yet, but checked: a listen that can never work is refused now.
                parse_address(spec.listen)
            self.proxies[spec.name] = proxy
            return proxy

    async def update(self, name: str, update: ProxyUpdate) -> Proxy:
        """Go's proxy.Update, made atomic: everything that can fail (resolving and binding
        the new address) happens before the proxy is touched, so a failure changes nothing."""
        async with self.lock:
            proxy = self.get(name)
            enabled = proxy.enabled if update.enabled is None else update.enabled
            upstream = proxy.upstream if update.upstream is None else update.upstream
            listen, resolved = proxy.listen, None
            if update.listen is not None:
                # Go's Differs: the new address resolved, compared with the current one.
                resolved = await resolve_listen(self.loop, update.listen)
                if resolved.shown != proxy.listen:
                    listen = update.listen
            moved = listen != proxy.listen
            listener = None
            if enabled and (moved or not proxy.enabled):
                try:
                    listener = await open_listener(self.loop, listen, resolved if moved else None)
                except ApiError:
                    if not (moved and resolved is not None and proxy.listens_on(resolved)):
                        raise
                    listener = await proxy.replace_listener(listen, resolved)
            # Nothing below can fail.
            if (proxy.enabled and not enabled) or moved:
                proxy.stop()
            elif upstream != proxy.upstream:
                # Go restarts the proxy; on the same address only the connections go.
                proxy.close_connections()
            proxy.listen = listen
            proxy.upstream = upstream
            if update.seed is not None:
                proxy.seed = update.seed
            if listener is not None:
                await proxy.serve(listener)
            return proxy

    async def delete(self, name: str) -> None:
        async with self.lock:
            proxy = self.get(name)
            proxy.stop()
            del self.proxies[name]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic. A proxy that cannot listen again (its
        port taken meanwhile) is a 500 once the others are done: the real server stops at it."""
        async with self.lock:
            failures: list[str] = []
            for proxy in list(self.proxies.values()):
                try:
                    await proxy.start()
                except ApiError as exc:
                    failures.append(exc.message)
                proxy.remove_all_toxics()
            if failures:
                raise ApiError("; ".join(failures), 500)

    async def populate(self, specs: list[ProxyInput]) -> list[Proxy]:
        """Go's PopulateJson, all or nothing: every address is resolved and bound before any
        proxy is created or replaced; a failure closes what was bound and changes nothing."""
        async with self.lock:
            plan: list[tuple[ProxyInput, Proxy | None, ResolvedAddress | None, bool]] = []
            for spec in specs:
                existing = self.proxies.get(spec.name)
                resolved = None
                if existing is not None or spec.enabled:
                    resolved = await resolve_listen(self.loop, spec.listen)
                else:
                    parse_address(spec.listen)
                keep = (
                    existing is not None
                    and resolved is not None
                    and resolved.shown == existing.listen
                    and spec.upstream == existing.upstream
                )
                plan.append((spec, existing, resolved, keep))
            # A replaced proxy's listener goes to the new proxy that wants its address (a
            # second bind there would fail while the old proxy still holds it).
            donors = {
                existing.listen: existing
                for _, existing, _, keep in plan
                if existing is not None and not keep and existing.listener is not None
            }
            handovers: dict[str, Proxy] = {}
            opened: dict[str, Listener] = {}
            try:
                for spec, _, resolved, keep in plan:
                    if keep or not spec.enabled:
                        continue
                    assert resolved is not None
                    donor = donors.pop(resolved.shown, None)
                    if donor is not None:
                        handovers[spec.name] = donor
                    else:
                        opened[spec.name] = await open_listener(self.loop, spec.listen, resolved)
            except ApiError:
                for listener in opened.values():
                    listener.close()
                raise
            # Nothing below can fail.
            for name, donor in handovers.items():
                opened[name] = donor.hand_over_listener()
            result: list[Proxy] = []
            for spec, existing, _, keep in plan:
                if existing is not None:
                    if keep:
                        result.append(existing)
                        continue
                    existing.stop()
                proxy = Proxy(self, spec)
                self.proxies[spec.name] = proxy
                if spec.name in opened:
                    await proxy.serve(opened[spec.name])
                result.append(proxy)
            return result

    async def close(self) -> None:
        async with self.lock:
            for proxy in self.proxies.values():
                proxy.stop()
            self.proxies.clear()
            # Later timers (if the engine is used again) fall back to the loop's own.
            self.clock.close()

    def live_connections(self) -> int:
        return sum(len(p.connections) for p in self.proxies.values())

    def metrics_text(self) -> str:
        """Prometheus text, with the real server's metric names and labels."""
        lines: list[str] = []
        for kind, help_text in (
            ("received", "Total bytes received from the source of a link"),
            ("sent", "Total bytes sent to the destination of a link"),
        ):
            metric = f"toxiproxy_proxy_{kind}_bytes_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            for proxy in self.proxies.values():
                for direction in ("downstream", "upstream"):
                    labels = _labels(
                        direction=direction,
                        listener=proxy.listen,
                        proxy=proxy.name,
                        upstream=proxy.upstream,
                    )
                    lines.append(f"{metric}{{{labels}}} {proxy.bytes[direction, kind]}")
        metric = "toxiproxy_proxy_connections"
        lines += [f"# HELP {metric} Live client connections", f"# TYPE {metric} gauge"]
        for proxy in self.proxies.values():
            labels = _labels(proxy=proxy.name)
            lines.append(f"{metric}{{{labels}}} {len(proxy.connections)}")
        metric = "faultproxy_delivery_lateness_seconds"
        lines += [
            f"# HELP {metric} Delay of scheduled deliveries past their due time (early < 0)",
            f"# TYPE {metric} histogram",
            *self.lateness.lines(metric),
        ]
        # Collections stall every delivery in flight: worth seeing next to the lateness.
        metric = "python_gc_collections_total"
        lines += [f"# HELP {metric} Garbage collections", f"# TYPE {metric} counter"]
        for generation, stats in enumerate(gc.get_stats()):
            lines.append(f'{metric}{{generation="{generation}"}} {stats["collections"]}')
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())

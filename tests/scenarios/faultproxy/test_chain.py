"""Toxic chains on a link with a fake clock: live add/update/remove semantics, no sockets.

The engine takes its clock and timers from the event loop object it is given; here that is a
manual clock, so interruption and flushing rules are checked to the microsecond.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any, cast

import pytest

from scenarios.faultproxy.engine import Connection, Histogram, Link, Side
from scenarios.faultproxy.models import ToxicConfig, decode_toxic_create
from scenarios.faultproxy.toxics import EOF, Chunk


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time(), call_at() and a manual advance()."""

    def __init__(self) -> None:
        self.now = 0.0
        self.queue: list[tuple[float, int, FakeHandle, Callable[[], None]]] = []
        self.seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeHandle:
        handle = FakeHandle()
        heapq.heappush(self.queue, (when, next(self.seq), handle, callback))
        return handle

    def advance(self, to: float) -> None:
        while self.queue and self.queue[0][0] <= to:
            when, _, handle, callback = heapq.heappop(self.queue)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            callback()
        self.now = to


class FakeSide:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.written: list[tuple[float, bytes]] = []
        self.closed_at: float | None = None
        self.write_paused = False
        self.paused = False

    def write(self, data: bytes) -> bool:
        self.written.append((round(self.loop.now, 6), data))
        return True

    def close(self) -> None:
        self.closed_at = round(self.loop.now, 6)

    def set_paused(self, direction: str, paused: bool) -> None:
        self.paused = paused


class FakeEngine:
    seed = 0
    lateness = Histogram()


class FakeProxy:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.engine = FakeEngine()
        self.name = "p"
        self.seed: int | None = 3

    def count(self, direction: str, kind: str, n: int) -> None:
        pass


class FakeConn:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.proxy = FakeProxy(loop)
        self.index = 1
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


def toxic(body: dict[str, Any]) -> ToxicConfig:
    return decode_toxic_create(body, set())


class Rig:
    def __init__(self, *configs: ToxicConfig) -> None:
        self.loop = FakeLoop()
        self.conn = FakeConn(self.loop)
        self.src = FakeSide(self.loop)
        self.dst = FakeSide(self.loop)
        self.link = Link(
            cast(Connection, self.conn),
            False,
            cast(Side, self.src),
            cast(Side, self.dst),
            configs,
        )

    def send(self, at: float, data: bytes) -> None:
        self.loop.advance(at)
        self.link.feed(Chunk(data, at))

    def eof(self, at: float) -> None:
        self.loop.advance(at)
        self.link.feed(EOF)


LATENCY_100 = {"type": "latency", "attributes": {"latency": 100}}


def test_no_toxics_writes_through() -> None:
    rig = Rig()
    rig.send(0.0, b"a")
    rig.eof(0.5)
    assert rig.dst.written == [(0.0, b"a")]
    assert rig.dst.closed_at == 0.5


def test_latency_pipelines_and_flushes_before_close() -> None:
    rig = Rig(toxic(LATENCY_100))
    rig.send(0.0, b"a")
    rig.send(0.02, b"b")
    rig.eof(0.03)
    rig.loop.advance(1.0)
    # Timers fire up to 0.5 ms early (they compensate the selector's rounding up).
    assert [d for _, d in rig.dst.written] == [b"a", b"b"]
    assert [t for t, _ in rig.dst.written] == pytest.approx([0.1, 0.12], abs=6e-4)
    assert rig.dst.closed_at == pytest.approx(0.12, abs=6e-4)


def test_update_flushes_held_chunk_and_applies_merged_attributes() -> None:
    rig = Rig(toxic({**LATENCY_100, "attributes": {"latency": 100, "jitter": 0}}))
    rig.send(0.0, b"held")
    rig.loop.advance(0.05)
    rig.link.update(toxic({"type": "latency", "attributes": {"latency": 300, "jitter": 0}}))
    assert rig.dst.written == [(0.05, b"held")]  # interrupted: out at once
    rig.send(0.06, b"next")
    rig.loop.advance(1.0)
    assert rig.dst.written[1][1] == b"next"
    assert rig.dst.written[1][0] == pytest.approx(0.36, abs=6e-4)


def test_remove_flushes_what_the_toxic_and_its_inbox_hold() -> None:
    rig = Rig(toxic({"type": "bandwidth", "attributes": {"rate": 0}}))
    rig.send(0.0, b"one")
    rig.send(0.1, b"two")
    rig.loop.advance(0.2)
    assert rig.dst.written == []
    rig.link.remove("bandwidth_downstream")
    assert rig.dst.written == [(0.2, b"one"), (0.2, b"two")]
    rig.send(0.3, b"three")
    assert rig.dst.written[-1] == (0.3, b"three")


def test_add_reruns_previous_toxic_and_chains_new_one() -> None:
    rig = Rig(toxic(LATENCY_100))
    rig.send(0.0, b"a")
    rig.loop.advance(0.05)
    rig.link.add(toxic({"type": "latency", "name": "second", "attributes": {"latency": 50}}))
    # The previous last toxic was interrupted: its held chunk skipped to the output.
    assert rig.dst.written == [(0.05, b"a")]
    rig.send(0.06, b"b")
    rig.loop.advance(1.0)
    # 0.06 + 100 ms, then the second toxic measures 50 ms from that.
    assert rig.dst.written[1][0] == pytest.approx(0.21, abs=1.2e-3)


def test_removing_timeout_closes_the_link() -> None:
    rig = Rig(toxic({"type": "timeout", "attributes": {"timeout": 0}}))
    rig.send(0.0, b"dropped")
    rig.loop.advance(10.0)
    assert rig.dst.written == []
    assert rig.dst.closed_at is None
    rig.link.remove("timeout_downstream")
    assert rig.dst.closed_at == 10.0


def test_timeout_deadline_counts_from_when_the_toxic_started() -> None:
    rig = Rig()
    rig.loop.advance(1.0)
    rig.link.add(toxic({"type": "timeout", "attributes": {"timeout": 200}}))
    rig.loop.advance(5.0)
    assert rig.dst.closed_at == pytest.approx(1.2, abs=6e-4)


def test_slow_close_restarted_while_delaying_sees_eof_again() -> None:
    rig = Rig(toxic({"type": "slow_close", "attributes": {"delay": 300}}))
    rig.eof(0.0)
    rig.loop.advance(0.1)
    rig.link.update(toxic({"type": "slow_close", "attributes": {"delay": 500}}))
    rig.loop.advance(5.0)
    assert rig.dst.closed_at == pytest.approx(0.6, abs=6e-4)


def test_reset_peer_is_not_interrupted_by_updates() -> None:
    rig = Rig(toxic({"type": "reset_peer", "attributes": {"timeout": 100}}))
    rig.send(0.0, b"x")
    rig.link.update(toxic({"type": "reset_peer", "attributes": {"timeout": 5000}}))
    rig.loop.advance(0.2)
    assert rig.conn.resets == 1
    assert rig.dst.written == []


def test_toxicity_zero_passes_through_and_draws_are_seeded() -> None:
    rig = Rig(toxic({**LATENCY_100, "toxicity": 0.0}))
    rig.send(0.0, b"a")
    assert rig.dst.written == [(0.0, b"a")]

    def pattern() -> str:
        out = ""
        for index in range(1, 17):
            r = Rig()
            r.conn.index = index
            r.link.add(toxic({"type": "limit_data", "toxicity": 0.5, "attributes": {"bytes": 1}}))
            r.send(0.0, b"abc")
            out += "T" if r.dst.written == [(0.0, b"a")] else "."
        return out

    assert pattern() == pattern()
    assert "T" in pattern()
    assert "." in pattern()


def test_buffered_bytes_pause_the_source() -> None:
    rig = Rig(toxic({"type": "bandwidth", "attributes": {"rate": 0}}))
    rig.send(0.0, b"x" * (5 * 1024 * 1024))
    assert rig.src.paused
    rig.link.remove("bandwidth_downstream")
    assert not rig.src.paused

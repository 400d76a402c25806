"""Toxic logic without sockets, event loops or clocks (sans-I/O).

A toxic running on one link is a small state machine: it is handed timed chunks (the bytes
and the loop time they were read from the source socket) and answers with a :class:`Plan`,
the actions to take and the absolute times to take them at. The engine (``engine.py``) only
waits for those times and moves bytes; everything that decides *what* happens and *when* is
here, so each toxic is unit-tested with bytes and floats.

Semantics follow Toxiproxy 2.12 (``toxics/*.go``): a stage handles one chunk at a time and is
busy until its plan is done, data that arrives meanwhile waits in the stage's inbox. Latency is
measured from the read time of a chunk, so chunks pipeline instead of adding up.

Randomness (jitter, slicer sizes) comes from the ``random.Random`` passed in: the engine seeds
one per proxy, connection, direction and toxic, so a scenario replays exactly.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from scenarios.faultproxy.errors import FaultProxyError

__all__ = [
    "EOF",
    "TOXIC_TYPES",
    "AttributeSpec",
    "Chunk",
    "Close",
    "Emit",
    "Eof",
    "InvalidAttributes",
    "Item",
    "LimitDataState",
    "Plan",
    "Reset",
    "RunningToxic",
    "jitter_delays_ms",
    "make_toxic",
    "noop",
    "slice_offsets",
    "validate_attributes",
]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes moving through a link, stamped with the time (seconds) they were read."""

    data: bytes
    t: float


@dataclass(frozen=True, slots=True)
class Eof:
    """The source side of a link ended (or a toxic before this one closed)."""


EOF: Final = Eof()
Item = Chunk | Eof


@dataclass(frozen=True, slots=True)
class Emit:
    """Pass ``chunk`` to the next toxic (or the destination socket) at time ``at``."""

    at: float
    chunk: Chunk


@dataclass(frozen=True, slots=True)
class Close:
    """Close this link's output at ``at``: the destination socket closes after what came before."""

    at: float


@dataclass(frozen=True, slots=True)
class Reset:
    """Reset the whole connection (TCP RST on both sockets) at ``at``."""

    at: float


Action = Emit | Close | Reset


@dataclass(frozen=True, slots=True)
class Plan:
    """What a toxic does with one input: actions in order, busy until ``until``."""

    actions: tuple[Action, ...] = ()
    until: float = -math.inf


class RunningToxic(Protocol):
    """One toxic running on one link (recreated when the toxic is updated or restarted)."""

    #: True when an update must not interrupt a pending Reset (reset_peer blocks in Go).
    uninterruptible: bool
    #: True when removing the toxic closes the link (timeout's Cleanup).
    closes_on_removal: bool

    def deadline(self, start: float) -> Close | None:
        """An action due regardless of input, counted from when the toxic (re)started."""

    def on_chunk(self, chunk: Chunk, now: float) -> Plan: ...

    def on_eof(self, now: float) -> Plan: ...


class InvalidAttributes(FaultProxyError, ValueError):
    """Attribute values the real server would crash on (answered with 400)."""


#: Go computes ``2*jitter`` in an int64: from here on it overflows.
_JITTER_LIMIT: Final = 2**62


# --------------------------------------------------------------------------------------------
# Attribute schema: every attribute is an integer; responses carry all of them, zero-filled.


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    names: tuple[str, ...]


TOXIC_TYPES: Final[Mapping[str, AttributeSpec]] = {
    "latency": AttributeSpec(("latency", "jitter")),
    "bandwidth": AttributeSpec(("rate",)),
    "slow_close": AttributeSpec(("delay",)),
    "timeout": AttributeSpec(("timeout",)),
    "reset_peer": AttributeSpec(("timeout",)),
    "slicer": AttributeSpec(("average_size", "size_variation", "delay")),
    "limit_data": AttributeSpec(("bytes",)),
    "noop": AttributeSpec(()),
}


def validate_attributes(toxic_type: str, attrs: Mapping[str, int]) -> None:
    """Refuse only the values that crash the real server (checked after merging an update).

    Toxiproxy takes any int64 and its toxics cope with most: a negative delay does not wait, a
    negative timeout is silent like 0, negative bytes close on the first data; those are
    accepted and behave the same here. What panics its toxic goroutine (and so the whole
    server) is a 400 instead:

    - ``bandwidth`` ``rate < 0``: ``p.Data[:rate*100]`` is a negative slice bound;
    - ``latency`` ``jitter >= 2**62``: ``rand.Int63n(2*jitter)`` overflows to a negative bound;
    - ``slicer``: ``chunk()`` halves a chunk around its middle, ± a draw in
      [-size_variation, size_variation) when size_variation > 0, until a piece is at most
      ``average_size + size_variation`` long. With a positive variation a cut can fall
      outside the chunk (a slice panic) unless ``size_variation <= average_size + 1``; with
      none, a 1-byte piece recurses for ever unless ``average_size + size_variation >= 1``.
    """
    if toxic_type == "bandwidth" and attrs["rate"] < 0:
        raise InvalidAttributes(
            f"rate must not be negative, got {attrs['rate']} (it crashes Toxiproxy); "
            "rate 0 holds the data until the toxic is removed"
        )
    if toxic_type == "latency" and attrs["jitter"] >= _JITTER_LIMIT:
        raise InvalidAttributes(
            f"jitter must be below 2^62 ms, got {attrs['jitter']} (it crashes Toxiproxy)"
        )
    if toxic_type == "slicer":
        average, variation = attrs["average_size"], attrs["size_variation"]
        if variation > 0 and variation > average + 1:
            raise InvalidAttributes(
                f"size_variation {variation} with average_size {average} cuts outside the "
                "data (it crashes Toxiproxy): use size_variation <= average_size + 1"
            )
        if variation <= 0 and average + variation < 1:
            raise InvalidAttributes(
                f"average_size {average} with size_variation {variation} never stops slicing "
                "(it crashes Toxiproxy): use average_size + size_variation >= 1"
            )


# --------------------------------------------------------------------------------------------
# The toxics. Negative delays (accepted, as by the real server) do not wait.

_MS: Final = 1e-3


class _Base:
    uninterruptible = False
    closes_on_removal = False

    def deadline(self, start: float) -> Close | None:
        return None

    def on_eof(self, now: float) -> Plan:
        return Plan((Close(now),), now)


class Noop(_Base):
    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        return Plan((Emit(now, chunk),), now)


def jitter_delays_ms(latency: int, jitter: int, rng: random.Random, count: int) -> list[int]:
    """The delays (ms) the latency toxic would draw for ``count`` chunks from ``rng``."""
    return [_latency_delay_ms(latency, jitter, rng) for _ in range(count)]


def _latency_delay_ms(latency: int, jitter: int, rng: random.Random) -> int:
    # Go: latency + rand.Int63n(2*jitter) - jitter, so the range is [latency-j, latency+j).
    if jitter > 0:
        return latency + rng.randrange(2 * jitter) - jitter
    return latency


class Latency(_Base):
    def __init__(self, latency: int, jitter: int, rng: random.Random) -> None:
        self.latency = latency
        self.jitter = jitter
        self.rng = rng

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        # Measured from the read time, not from when this stage got to it: pipelined.
        due = chunk.t + _latency_delay_ms(self.latency, self.jitter, self.rng) * _MS
        at = max(due, now)
        return Plan((Emit(at, Chunk(chunk.data, at)),), at)


class Bandwidth(_Base):
    """Paces bytes at ``rate`` KB/s; chunks larger than 100 ms worth go out in 100 ms slices."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        # Go keeps the pacing debt (seconds) across chunks while the toxic runs.
        self.debt = 0.0

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        data = chunk.data
        if self.rate <= 0:
            # Go slices 0-byte pieces every 100 ms forever: the data never leaves.
            self.debt = 0.0
            return Plan((Emit(math.inf, chunk),), math.inf)
        self.debt += len(data) / (self.rate * 1000.0)
        slice_size = self.rate * 100
        actions: list[Action] = []
        t = now
        while len(data) > slice_size:
            t += 0.1
            actions.append(Emit(t, Chunk(data[:slice_size], chunk.t)))
            data = data[slice_size:]
            self.debt -= 0.1
        wait = max(self.debt, 0.0)
        t += wait
        self.debt -= wait
        actions.append(Emit(t, Chunk(data, chunk.t)))
        return Plan(tuple(actions), t)


class SlowClose(_Base):
    def __init__(self, delay: int) -> None:
        self.delay = delay

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        return Plan((Emit(now, chunk),), now)

    def on_eof(self, now: float) -> Plan:
        at = now + max(self.delay, 0) * _MS
        return Plan((Close(at),), at)


class Timeout(_Base):
    """Drops everything; closes ``timeout`` ms after it started (0 = never). Removal closes."""

    closes_on_removal = True

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout

    def deadline(self, start: float) -> Close | None:
        return Close(start + self.timeout * _MS) if self.timeout > 0 else None

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        return Plan((), now)


class ResetPeer(_Base):
    """On the first data (or EOF): drop it, wait ``timeout`` ms, then reset the connection."""

    uninterruptible = True

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout

    def _reset(self, now: float) -> Plan:
        at = now + max(self.timeout, 0) * _MS
        return Plan((Reset(at),), at)

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        return self._reset(now)

    def on_eof(self, now: float) -> Plan:
        return self._reset(now)


def slice_offsets(
    size: int, average_size: int, size_variation: int, rng: random.Random
) -> list[int]:
    """Boundaries splitting ``size`` bytes into pieces of about ``average_size`` (±variation).

    Same recursive halving as Toxiproxy's ``SlicerToxic.chunk`` (no small piece at either
    end), returned as ``[0, b1, b2, ..., size]``. Unlike Go's, every cut stays inside the
    piece and a 1-byte piece is never split, so any attribute values end.
    """
    bounds: list[int] = [0]

    def split(start: int, end: int) -> None:
        if (end - start) - average_size <= size_variation or end - start <= 1:
            bounds.append(end)
            return
        mid = start + (end - start) // 2
        if size_variation > 0:
            mid += rng.randrange(size_variation * 2) - size_variation + rng.randrange(2)
        mid = min(max(mid, start + 1), end - 1)
        split(start, mid)
        split(mid, end)

    if size > 0:
        split(0, size)
    return bounds


class Slicer(_Base):
    def __init__(
        self, average_size: int, size_variation: int, delay_us: int, rng: random.Random
    ) -> None:
        self.average_size = average_size
        self.size_variation = size_variation
        self.delay = max(delay_us, 0) * 1e-6
        self.rng = rng

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        bounds = slice_offsets(len(chunk.data), self.average_size, self.size_variation, self.rng)
        actions: list[Action] = []
        t = now
        for start, end in itertools.pairwise(bounds):
            actions.append(Emit(t, Chunk(chunk.data[start:end], chunk.t)))
            # Go waits `delay` after every piece, the last one included.
            t += self.delay
        return Plan(tuple(actions), t)


@dataclass(slots=True)
class LimitDataState:
    """Bytes already forwarded; survives updates of the toxic (Go's StatefulToxic)."""

    transmitted: int = 0


@dataclass(slots=True)
class LimitData(_Base):
    limit: int
    state: LimitDataState = field(default_factory=LimitDataState)

    def on_chunk(self, chunk: Chunk, now: float) -> Plan:
        remaining = max(self.limit - self.state.transmitted, 0)
        actions: list[Action] = []
        data = chunk.data[:remaining]
        if data:
            actions.append(Emit(now, Chunk(data, chunk.t)))
            self.state.transmitted += len(data)
        if self.limit - self.state.transmitted <= 0:
            actions.append(Close(now))
        return Plan(tuple(actions), now)


def make_toxic(
    toxic_type: str,
    attrs: Mapping[str, int],
    rng: random.Random,
    state: LimitDataState | None = None,
) -> RunningToxic:
    """Instantiate the logic of a (validated) toxic for one link."""
    if toxic_type == "latency":
        return Latency(attrs["latency"], attrs["jitter"], rng)
    if toxic_type == "bandwidth":
        return Bandwidth(attrs["rate"])
    if toxic_type == "slow_close":
        return SlowClose(attrs["delay"])
    if toxic_type == "timeout":
        return Timeout(attrs["timeout"])
    if toxic_type == "reset_peer":
        return ResetPeer(attrs["timeout"])
    if toxic_type == "slicer":
        return Slicer(attrs["average_size"], attrs["size_variation"], attrs["delay"], rng)
    if toxic_type == "limit_data":
        return LimitData(attrs["bytes"], state if state is not None else LimitDataState())
    if toxic_type == "noop":
        return Noop()
    raise ValueError(f"unknown toxic type {toxic_type!r}")


def noop() -> RunningToxic:
    """What a stage runs when the toxicity draw says the toxic does not apply."""
    return Noop()

"""Token timing: when each token of a stream is due, relative to the stream's start.

Every time is computed from the start (``ttft + i * itl + jitter_i``), never by adding up
gaps, so scheduling errors do not accumulate over a long stream. Jitter comes from the
caller's seeded RNG, so the same request gives the same schedule.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

__all__ = ["EvenTimes", "Timing", "chunk_bounds", "token_time_blocks", "token_times"]

# Times are made this many at a time when a stream asks for them lazily.
_BLOCK = 64


@dataclass(frozen=True)
class Timing:
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    jitter_ms: float = 0.0
    tokens_per_chunk: int = 1


def token_times(
    count: int,
    timing: Timing,
    rng: random.Random,
    *,
    stall_after: int | None = None,
    stall_seconds: float = 0.0,
) -> list[float]:
    """Due time in seconds of each of ``count`` tokens; non-decreasing and >= 0.

    Jitter is uniform in ``[-jitter_ms, +jitter_ms]`` and applies to every token including
    the first (so TTFT jitters too). A stall after ``stall_after`` tokens shifts every later
    token by ``stall_seconds``.
    """
    times: list[float] = []
    for block in token_time_blocks(
        count, timing, rng, stall_after=stall_after, stall_seconds=stall_seconds
    ):
        times.extend(block)
    return times


def token_time_blocks(
    count: int,
    timing: Timing,
    rng: random.Random | None,
    *,
    stall_after: int | None = None,
    stall_seconds: float = 0.0,
) -> Iterator[Sequence[float]]:
    """:func:`token_times` in blocks, made as they are asked for (``rng`` is only used, and
    only needed, with jitter). The same floats, computed the same way."""
    ttft, itl, jitter = timing.ttft_ms, timing.itl_ms, timing.jitter_ms
    stall_from = count if stall_after is None or stall_seconds <= 0 else max(0, stall_after)
    previous = 0.0
    for start in range(0, count, _BLOCK):
        stop = min(start + _BLOCK, count)
        if not jitter and not itl:
            # Every token at the TTFT (the `instant` profile): one value, copied.
            block = [(ttft + 0.0) / 1000.0] * (stop - start)
        elif not jitter:
            # Without jitter the times are already non-decreasing (itl >= 0).
            block = [(ttft + i * itl) / 1000.0 for i in range(start, stop)]
        else:
            assert rng is not None, "jittered times need an rng"
            block = []
            for i in range(start, stop):
                due = ttft + i * itl + rng.uniform(-jitter, jitter)
                seconds = max(due / 1000.0, previous)
                block.append(seconds)
                previous = seconds
        if stop > stall_from:
            for j in range(max(start, stall_from) - start, stop - start):
                block[j] += stall_seconds
        # A suspended stream holds its current block: 8 bytes a time, not a float object.
        made = array("d", block)
        del block
        yield made


class EvenTimes(Sequence[float]):
    """:func:`token_times` without jitter, each time computed when read (the same floats):
    nothing to store, nothing to make ahead."""

    __slots__ = ("_count", "_itl", "_stall", "_stall_from", "_ttft")

    def __init__(
        self,
        count: int,
        timing: Timing,
        *,
        stall_after: int | None = None,
        stall_seconds: float = 0.0,
    ):
        if timing.jitter_ms:
            raise ValueError("EvenTimes has no jitter: use token_time_blocks")
        self._count = max(0, count)
        self._ttft, self._itl = timing.ttft_ms, timing.itl_ms
        stalls = stall_after is not None and stall_seconds > 0
        self._stall_from = max(0, stall_after) if stall_after is not None and stalls else count
        self._stall = stall_seconds

    def _at(self, i: int) -> float:
        seconds = (self._ttft + i * self._itl) / 1000.0
        if i >= self._stall_from:
            seconds += self._stall
        return seconds

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> list[float]: ...
    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("EvenTimes index out of range")
        return self._at(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


def chunk_bounds(count: int, tokens_per_chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of each chunk."""
    size = max(1, tokens_per_chunk)
    return [(start, min(start + size, count)) for start in range(0, count, size)]

"""Token timing: when each token of a stream is due, relative to the stream's start.

Every time is computed from the start (``ttft + i * itl + jitter_i``), never by adding up
gaps, so scheduling errors do not accumulate over a long stream. Jitter comes from the
caller's seeded RNG, so the same request gives the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Timing", "chunk_bounds", "token_times"]


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
    ttft, itl, jitter = timing.ttft_ms, timing.itl_ms, timing.jitter_ms
    if not jitter:
        # Without jitter the times are already non-decreasing (itl >= 0).
        times = [(ttft + i * itl) / 1000.0 for i in range(count)]
    else:
        times = []
        previous = 0.0
        for i in range(count):
            due = ttft + i * itl + rng.uniform(-jitter, jitter)
            seconds = max(due / 1000.0, previous)
            times.append(seconds)
            previous = seconds
    if stall_after is not None and stall_seconds > 0:
        for i in range(stall_after, count):
            times[i] += stall_seconds
    return times


def chunk_bounds(count: int, tokens_per_chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of each chunk."""
    size = max(1, tokens_per_chunk)
    return [(start, min(start + size, count)) for start in range(0, count, size)]

"""mockllm.schedule: token due times anchored at the stream start."""

from __future__ import annotations

import itertools
import random

from mockllm.schedule import Timing, chunk_bounds, token_times


def test_times_are_anchored_at_the_start_not_accumulated() -> None:
    times = token_times(1000, Timing(ttft_ms=100, itl_ms=10), random.Random(0))
    assert times[0] == 0.1
    assert abs(times[999] - (0.1 + 999 * 0.01)) < 1e-9


def test_jitter_is_seeded_bounded_and_monotonic() -> None:
    timing = Timing(ttft_ms=50, itl_ms=10, jitter_ms=4)
    first = token_times(200, timing, random.Random(3))
    assert first == token_times(200, timing, random.Random(3))
    assert first != token_times(200, timing, random.Random(4))
    assert all(b >= a for a, b in itertools.pairwise(first))
    for i, t in enumerate(first):
        assert t * 1000 <= 50 + i * 10 + 4 + 1e-9


def test_stall_shifts_every_later_token() -> None:
    base = token_times(6, Timing(itl_ms=10), random.Random(0))
    stalled = token_times(6, Timing(itl_ms=10), random.Random(0), stall_after=3, stall_seconds=2)
    assert stalled[:3] == base[:3]
    assert [round(s - b, 9) for s, b in zip(stalled[3:], base[3:], strict=True)] == [2, 2, 2]


def test_instant_profile_is_all_zero() -> None:
    assert token_times(5, Timing(), random.Random(0)) == [0.0] * 5


def test_chunk_bounds() -> None:
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds(0, 3) == []
    assert chunk_bounds(2, 1) == [(0, 1), (1, 2)]

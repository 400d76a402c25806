"""mockllm.schedule: token due times anchored at the stream start."""

from __future__ import annotations

import itertools
import random

import pytest

from mockllm.schedule import EvenTimes, Timing, chunk_bounds, token_time_blocks, token_times


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


def _times_made_whole(
    count: int, timing: Timing, rng: random.Random, stall_after: int | None, stall_seconds: float
) -> list[float]:
    """The schedule as it was computed before it came in blocks: all times, then the stall."""
    ttft, itl, jitter = timing.ttft_ms, timing.itl_ms, timing.jitter_ms
    if not jitter:
        times = [(ttft + i * itl) / 1000.0 for i in range(count)]
    else:
        times, previous = [], 0.0
        for i in range(count):
            seconds = max((ttft + i * itl + rng.uniform(-jitter, jitter)) / 1000.0, previous)
            times.append(seconds)
            previous = seconds
    if stall_after is not None and stall_seconds > 0:
        for i in range(stall_after, count):
            times[i] += stall_seconds
    return times


def test_blocks_give_the_same_floats_as_whole_schedules() -> None:
    for timing, stall_after in itertools.product(
        (Timing(390, 12.3, 4), Timing(0, 0.7), Timing(5, 1, 3), Timing(25), Timing()),
        (None, 0, 63, 64, 65, 150, 999),
    ):
        blocks = list(
            token_time_blocks(
                150, timing, random.Random(9), stall_after=stall_after, stall_seconds=0.37
            )
        )
        assert [len(b) for b in blocks] == [64, 64, 22]
        expected = _times_made_whole(150, timing, random.Random(9), stall_after, 0.37)
        assert [t for b in blocks for t in b] == expected  # exactly, not approximately


def test_blocks_without_jitter_need_no_rng() -> None:
    assert list(next(token_time_blocks(3, Timing(10, 5), None))) == [0.01, 0.015, 0.02]


def test_even_times_are_the_blocks_floats_computed_when_read() -> None:
    for timing, stall_after in itertools.product(
        (Timing(390, 12.3), Timing(0, 0.7), Timing(25), Timing(3, 20)), (None, 0, 5, 150)
    ):
        even = EvenTimes(150, timing, stall_after=stall_after, stall_seconds=0.37)
        expected = _times_made_whole(150, timing, random.Random(0), stall_after, 0.37)
        assert list(even) == expected and even[3:77] == expected[3:77]
        assert even[-1] == expected[-1] and len(even) == 150
    with pytest.raises(ValueError, match="jitter"):
        EvenTimes(3, Timing(jitter_ms=1))
    with pytest.raises(IndexError):
        EvenTimes(3, Timing())[3]

"""Full garbage collections run between streams, not in the middle of them."""

from __future__ import annotations

import asyncio
import gc

import pytest

from reference_server.collector import full_collection_due, managed_collections


def test_due_when_idle_after_traffic_or_when_the_interval_passed() -> None:
    due = dict(now=10.0, last_full=0.0, interval_s=60.0)
    assert full_collection_due(idle=True, traffic_since=True, **due)
    assert not full_collection_due(idle=True, traffic_since=False, **due)  # idle all along
    assert not full_collection_due(idle=False, traffic_since=True, **due)  # streams running
    assert full_collection_due(idle=False, traffic_since=True, now=60.0, last_full=0.0,
                               interval_s=60.0)  # fmt: skip


async def test_automatic_full_collections_are_off_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    async with managed_collections(60.0, active=lambda: 1, traffic=lambda: 0):
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] > 10**6
        async with managed_collections(60.0, active=lambda: 1, traffic=lambda: 0):
            pass
        assert gc.get_threshold()[2] > 10**6  # a second app leaving does not switch it back
    assert gc.get_threshold() == before
    async with managed_collections(0, active=lambda: 1, traffic=lambda: 0):
        assert gc.get_threshold() == before  # 0 = CPython's own policy


async def test_the_collector_runs_a_full_collection_once_the_streams_are_done() -> None:
    runs: list[int] = []
    collected = asyncio.Event()

    def callback(phase: str, info: dict[str, int]) -> None:
        # called inside gc.collect(), on the collector task's own thread
        if phase == "stop" and info["generation"] == 2:
            runs.append(1)
            collected.set()

    active, started = [1], [0]
    polls = 0
    polled_twice = asyncio.Event()

    def running() -> int:
        nonlocal polls
        polls += 1
        if polls >= 2:
            polled_twice.set()
        return active[0]

    gc.callbacks.append(callback)
    try:
        async with managed_collections(3600.0, running, lambda: started[0]):
            started[0] = 5  # traffic came...
            await asyncio.wait_for(polled_twice.wait(), 5)  # ...but a stream still runs
            assert not runs
            active[0] = 0
            await asyncio.wait_for(collected.wait(), 5)
    finally:
        gc.callbacks.remove(callback)
    assert len(runs) >= 1


@pytest.mark.parametrize("interval", [-1.0])
async def test_a_negative_interval_is_treated_as_off(interval: float) -> None:
    before = gc.get_threshold()
    async with managed_collections(interval, active=lambda: 0, traffic=lambda: 0):
        assert gc.get_threshold() == before

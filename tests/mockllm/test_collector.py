"""mockllm.collector: full collections wait for a quiet moment, not just an idle instant."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from mockllm.collector import managed_collections
from tests.support import wait_for_async


async def test_short_answers_back_to_back_do_not_trigger_full_collections() -> None:
    full: list[int] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    # No stream is running at any poll (each answer is written in one go), but new ones keep
    # arriving between polls: that is load, not idleness.
    started = [0]
    polls = [0]

    def traffic() -> int:
        polls[0] += 1
        if busy.is_set():
            started[0] += 1
        return started[0]

    busy = asyncio.Event()
    busy.set()
    gc.callbacks.append(callback)
    try:
        async with managed_collections(3600.0, active=lambda: 0, traffic=traffic):
            await wait_for_async(lambda: polls[0] >= 6, what="five polls under load")
            assert full == []
            busy.clear()  # the load stops: the next quiet poll collects
            await wait_for_async(lambda: full, what="a full collection once quiet")
    finally:
        gc.callbacks.remove(callback)

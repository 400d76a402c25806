"""run_eagerly: a coroutine stepped in its caller until it waits, then finished by a task."""

from __future__ import annotations

import asyncio

import pytest

from reference_server.eager import run_eagerly


async def test_a_coroutine_that_never_waits_runs_to_the_end_in_the_call() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert run_eagerly(write()) is None
    assert done == ["written"]  # before any turn of the event loop


async def test_an_exception_before_the_first_wait_is_raised_in_the_call() -> None:
    async def broken() -> None:
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        run_eagerly(broken())


async def test_a_wait_hands_the_rest_to_a_task_with_the_awaited_result() -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    steps: list[str] = []

    async def write() -> int:
        steps.append("before")
        value = await ready
        steps.append("after")
        return value * 2

    rest = run_eagerly(write())
    assert rest is not None and steps == ["before"]
    task = asyncio.create_task(rest)
    await asyncio.sleep(0)
    assert not task.done()
    ready.set_result(21)
    assert await asyncio.wait_for(task, 5) == 42
    assert steps == ["before", "after"]


async def test_an_event_wait_resumes_where_it_stopped() -> None:
    # What ASGI's send does on a paused transport. The "blocking" mark the coroutine's own
    # await leaves on the future must not trip up the task that carries on.
    writable = asyncio.Event()
    steps: list[str] = []

    async def send() -> None:
        await writable.wait()
        steps.append("sent")

    rest = run_eagerly(send())
    assert rest is not None
    task = asyncio.create_task(rest)
    await asyncio.sleep(0)
    writable.set()
    await asyncio.wait_for(task, 5)
    assert steps == ["sent"]


async def test_the_rest_wakes_in_the_order_it_started_waiting() -> None:
    # A write that waited first must go out first, before a task that waited after it.
    writable = asyncio.Event()
    order: list[str] = []

    async def send(name: str) -> None:
        await writable.wait()
        order.append(name)

    rest = run_eagerly(send("pushed"))
    assert rest is not None
    carried = asyncio.create_task(rest)
    queued = asyncio.create_task(send("queued"))
    await asyncio.sleep(0)
    writable.set()
    await asyncio.wait_for(asyncio.gather(carried, queued), 5)
    assert order == ["pushed", "queued"]


async def test_the_awaited_futures_exception_reaches_the_coroutine() -> None:
    failing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write() -> str:
        try:
            await failing
        except ConnectionResetError:
            return "peer gone"
        return "written"

    rest = run_eagerly(write())
    assert rest is not None
    task = asyncio.create_task(rest)
    failing.set_exception(ConnectionResetError())
    assert await asyncio.wait_for(task, 5) == "peer gone"


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def write() -> None:
        try:
            await never
        finally:
            cleaned.append("finally ran")

    rest = run_eagerly(write())
    assert rest is not None
    task = asyncio.create_task(rest)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"]


async def test_a_cancel_after_the_future_is_done_still_reaches_the_coroutine() -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def write() -> None:
        try:
            await ready
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("resumed")

    rest = run_eagerly(write())
    assert rest is not None
    task = asyncio.create_task(rest)
    await asyncio.sleep(0)
    ready.set_result(None)
    task.cancel()  # the future is done already: the cancel is thrown, not delivered by it
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_a_bare_yield_is_one_turn_of_the_loop() -> None:
    steps: list[int] = []

    async def twice() -> None:
        steps.append(1)
        await asyncio.sleep(0)
        steps.append(2)

    rest = run_eagerly(twice())
    assert rest is not None and steps == [1]
    await asyncio.wait_for(asyncio.create_task(rest), 5)
    assert steps == [1, 2]

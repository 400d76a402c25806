"""Helpers shared by the tests (not a test module): wait for a condition instead of sleeping.

A test that needs something to have happened polls for it with :func:`wait_for` (plain code)
or :func:`wait_for_async` (on the event loop, which keeps running between polls), never a
bare ``sleep`` standing in for the condition. Both return the first value of ``condition()``
that is truthy (or passes ``until``) and fail with the last one, so the failure says what was
seen. :func:`start_cli` starts one of our CLIs and waits for its ``listening on`` line
(:func:`mockllm.childproc.start_child`); :func:`run_probe` runs a probe that needs a process
of its own; :class:`LiveStack` names a running mock and server.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from mockllm.childproc import Child, start_child

__all__ = ["LiveStack", "run_probe", "start_cli", "wait_for", "wait_for_async"]

T = TypeVar("T")


def _not_met(what: str, timeout_s: float, value: object) -> AssertionError:
    return AssertionError(f"no {what} within {timeout_s} s (last value {value!r})")


def wait_for(
    condition: Callable[[], T],
    timeout_s: float = 10.0,
    interval: float = 0.02,
    what: str = "truthy value",
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``condition()`` every ``interval`` s until ``until(value)`` holds; return the value."""
    deadline = time.monotonic() + timeout_s
    value = condition()
    while not until(value):
        if time.monotonic() > deadline:
            raise _not_met(what, timeout_s, value)
        time.sleep(interval)
        value = condition()
    return value


@overload
async def wait_for_async(
    condition: Callable[[], Awaitable[T]],
    timeout_s: float = ...,
    interval: float = ...,
    what: str = ...,
    until: Callable[[T], object] = ...,
) -> T: ...
@overload
async def wait_for_async(
    condition: Callable[[], T],
    timeout_s: float = ...,
    interval: float = ...,
    what: str = ...,
    until: Callable[[T], object] = ...,
) -> T: ...
async def wait_for_async(
    condition: Callable[[], Any],
    timeout_s: float = 10.0,
    interval: float = 0.02,
    what: str = "truthy value",
    until: Callable[[Any], object] = bool,
) -> Any:
    """:func:`wait_for` on the running loop; ``condition`` may be a coroutine function."""

    async def check() -> Any:
        value = condition()
        return await value if inspect.isawaitable(value) else value

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    value = await check()
    while not until(value):
        if loop.time() > deadline:
            raise _not_met(what, timeout_s, value)
        await asyncio.sleep(interval)
        value = await check()
    return value


def start_cli(*argv: str, timeout_s: float = 30.0, env: Mapping[str, str] | None = None) -> Child:
    """Start ``python -m <argv>`` and wait for its ``listening on`` line; stop it with
    :func:`mockllm.childproc.stop_process`. Its output (stdout and stderr) is in the error
    when it does not start."""
    return start_child(
        [sys.executable, "-m", *argv],
        timeout_s=timeout_s,
        env=env,
        stderr=subprocess.STDOUT,
        failure=lambda child: RuntimeError(
            f"{argv[0]} did not start (exit code {child.proc.returncode}): {child.text[-2000:]}"
        ),
    )


def run_probe(module: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Run ``python -m module``, a probe that needs a process of its own (gevent patches the
    interpreter it runs in), and return the JSON object on its last line of output."""
    out = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=timeout_s
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return seen


@dataclass(frozen=True)
class LiveStack:
    """Base URLs of a running mock provider and the server in front of it."""

    mock: str
    server: str

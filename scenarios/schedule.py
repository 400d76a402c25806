"""The fault scheduler: applies a plan's toxics and server events when they are due.

Due means at start, after T ms since the clients started, or once N tokens reached the
clients (counted over all streams), plus the action's seeded delay. Toxics go to the stack's
Toxiproxy-compatible API (and are removed again after ``duration_ms``); server events ask the
stack to restart the server, restart its Redis or kill one worker. What happened goes to the
run's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

import httpx

from scenarios.drivers.base import Live
from scenarios.plan import PlannedAction, RunPlan
from scenarios.stack.procs import StackError

__all__ = ["FaultTarget", "apply_at_start", "note_started", "note_unfired", "run_schedule"]


class FaultTarget(Protocol):
    """What the scheduler needs of a running stack."""

    proxy_api_url: str | None
    upstream_proxy_name: str | None
    downstream_proxy_name: str | None

    async def restart_server(self) -> None: ...

    async def restart_redis(self) -> None: ...

    async def kill_worker(self, worker: int) -> None: ...


async def apply_at_start(
    plan: RunPlan, stack: FaultTarget, http: httpx.AsyncClient, live: Live
) -> None:
    """Apply the actions due at start, before the clock starts (:func:`note_started` notes
    them once it has)."""
    for action in plan.actions:
        if action.at_start:
            await _fire(action, stack, http, live, quiet=True)


def note_started(plan: RunPlan, live: Live) -> None:
    for action in plan.actions:
        if action.at_start:
            live.note(f"{action.label} applied before the clients started")


async def run_schedule(
    plan: RunPlan, stack: FaultTarget, http: httpx.AsyncClient, live: Live
) -> None:
    """Fire every other action when due (run as a task; cancelled when the clients finish)."""
    pending = [a for a in plan.actions if not a.at_start]
    await asyncio.gather(*(_when_due(a, stack, http, live) for a in pending))


def note_unfired(plan: RunPlan, live: Live) -> None:
    for action in plan.actions:
        if not any(e.what.startswith(action.label) for e in live.events):
            live.note(f"{action.label} never fired")


async def _fire(
    action: PlannedAction,
    stack: FaultTarget,
    http: httpx.AsyncClient,
    live: Live,
    *,
    quiet: bool = False,
) -> None:
    if action.kind == "restart_server":
        live.note(f"{action.label}: restarting the server")
        await stack.restart_server()
        live.note("server restarted")
        return
    if action.kind == "restart_redis":
        live.note(f"{action.label}: restarting Redis (it keeps nothing)")
        await stack.restart_redis()
        live.note("Redis restarted")
        return
    if action.kind == "kill_worker":
        assert action.worker is not None
        await stack.kill_worker(action.worker)
        live.note(f"{action.label}: worker {action.worker} killed (SIGKILL)")
        return
    assert action.toxic is not None
    name = stack.upstream_proxy_name if action.proxy == "upstream" else stack.downstream_proxy_name
    url = f"{stack.proxy_api_url}/proxies/{name}/toxics"
    response = await http.post(url, json=dict(action.toxic))
    if response.status_code != 200:
        raise StackError(
            f"the fault proxy refused {action.label}: HTTP {response.status_code} "
            f"{response.text.strip()[:300]}"
        )
    if not quiet:  # at-start actions are noted once the clock starts
        live.note(f"{action.label}: added")
    if action.duration_ms is not None:
        live.timers.append(
            asyncio.create_task(_remove_later(http, f"{url}/{action.toxic['name']}", action, live))
        )


async def _remove_later(
    http: httpx.AsyncClient, url: str, action: PlannedAction, live: Live
) -> None:
    assert action.duration_ms is not None
    await asyncio.sleep(action.duration_ms / 1000)
    with contextlib.suppress(httpx.HTTPError):
        await http.delete(url)
        live.note(f"{action.label}: removed after {action.duration_ms} ms")


async def _when_due(
    action: PlannedAction, stack: FaultTarget, http: httpx.AsyncClient, live: Live
) -> None:
    if action.after_tokens is not None:
        # Polled, not signalled: the client library fills records from its reader tasks,
        # and a 5 ms poll costs nothing next to the token timings scenarios use.
        while live.tokens() < action.after_tokens:  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.005)
    elif action.after_ms is not None:
        await asyncio.sleep(max(0.0, live.t0 + action.after_ms / 1000 - time.perf_counter()))
    if action.delay_ms:
        await asyncio.sleep(action.delay_ms / 1000)
    await _fire(action, stack, http, live)

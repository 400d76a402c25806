"""What a run observed: the server's /stats, the mock's ledger, and each stream as the checks
see it (:class:`scenarios.checks.StreamObservation`).

The expected text of a stream is what the mock actually sent for the upstream request that
stream caused, so a server that adds a system prompt, keeps history, rewrites the prompt or
picks its own model is judged on what it relayed. Streams are tied to ledger entries by their
prompt (each names its client and message, so it is unique in a run): the request's last user
message equal to it, then containing it, then any of its messages containing it. When no
request of the run carries a prompt (a server that sends none of the user's words), a request
goes to the one stream that was waiting when it started, when exactly one was; a request a
server makes late for an earlier scenario can then be taken too, which nothing in the
request can tell apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from scenarios import model
from scenarios.checks import Arrival, LedgerEntry, StreamObservation
from scenarios.drivers.base import StreamState

__all__ = [
    "attribute",
    "expected_text",
    "fetch_stats",
    "idle_stats",
    "observation",
    "observe",
    "sample_stats",
    "settled_ledger",
]


# ------------------------------------------------------------------------------- /stats


async def fetch_stats(http: httpx.AsyncClient, server_url: str) -> dict[str, float] | None:
    """The server's ``/stats`` numbers, or None when it has none."""
    try:
        response = await http.get(f"{server_url}/stats", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


async def sample_stats(
    http: httpx.AsyncClient, server_url: str, peak: dict[str, float], interval_s: float
) -> None:
    """Keep the peak of every /stats number (run as a task)."""
    while True:
        stats = await fetch_stats(http, server_url)
        for key, value in (stats or {}).items():
            peak[key] = max(peak.get(key, value), value)
        await asyncio.sleep(interval_s)


async def idle_stats(
    http: httpx.AsyncClient,
    server_url: str,
    baseline: Mapping[str, float] | None,
    scenario: model.Scenario,
    timeout_s: float,
) -> dict[str, float] | None:
    """``/stats`` once it is back to the idle baseline for the leak check's keys, or at the
    deadline: a leak is what is still there after the server had time to clean up."""
    leak_checks = [c for c in scenario.checks if isinstance(c, model.NoLeaks)]
    keys = {k for c in leak_checks for k in c.keys}
    slack = max((c.slack for c in leak_checks), default=0)
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await fetch_stats(http, server_url)
        if stats is None or baseline is None or not keys:
            return stats
        if all(stats.get(k, 0) <= baseline.get(k, 0) + slack for k in keys):
            return stats
        if time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------- ledger


async def settled_ledger(
    http: httpx.AsyncClient, mock_url: str, timeout_s: float
) -> list[LedgerEntry]:
    """The ledger once every upstream request has ended (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await http.get(f"{mock_url}/_mock/requests")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["requests"]
        if all(e.get("ended_at") is not None for e in entries) or time.monotonic() > deadline:
            return [LedgerEntry.from_dict(e) for e in entries]
        await asyncio.sleep(0.05)


def attribute(
    states: Sequence[StreamState], ledger: Sequence[LedgerEntry]
) -> dict[str, list[LedgerEntry]]:
    """Each stream's upstream requests (by stream key), in ledger order."""
    out: dict[str, list[LedgerEntry]] = {s.key: [] for s in states}
    claimed: set[str] = set()

    def claim(state: StreamState, matches: Callable[[LedgerEntry, str], bool]) -> None:
        for e in ledger:
            if e.id not in claimed and matches(e, state.prompt):
                out[state.key].append(e)
                claimed.add(e.id)

    # The longest prompts first: a prompt that contains another ("... for g0-11" and
    # "... for g0-1") takes its own requests before the shorter one could.
    by_length = sorted(states, key=lambda s: len(s.prompt), reverse=True)
    for s in by_length:
        claim(s, lambda e, prompt: e.last_user_text == prompt)
    for s in by_length:
        claim(s, lambda e, prompt: prompt in e.last_user_text)
    for s in by_length:
        if not out[s.key]:
            claim(s, lambda e, prompt: e.matches(prompt))
    for found in out.values():
        found.sort(key=lambda e: e.seq)
    if claimed:
        # The server passes the prompts on: a request without one of this run's is not ours
        # (a request it still makes for an earlier scenario, say).
        return out
    # A server that sends none of the user's words: by time, where only one stream waited.
    windows = {s.key: _window(s) for s in states if not out[s.key] and s.sent_at_epoch}
    for e in ledger:
        if e.id in claimed or any(p.prompt in e.prompt_text for p in states):
            continue
        waiting = [k for k, (a, b) in windows.items() if a <= e.started_at <= b]
        if len(waiting) == 1:
            out[waiting[0]].append(e)
            claimed.add(e.id)
    return out


def _window(state: StreamState) -> tuple[float, float]:
    start = state.sent_at_epoch
    ends = [
        start + (r.ended_at - state.sent_at)
        for r in state.records
        if r.ended_at is not None and state.sent_at is not None
    ]
    return start, max(ends, default=float("inf"))


# ---------------------------------------------------------------------------- streams


async def observe(
    http: httpx.AsyncClient,
    mock_url: str,
    states: Sequence[StreamState],
    ledger: Sequence[LedgerEntry],
    t0: float,
    request_model: str,
) -> list[StreamObservation]:
    """Every stream as the checks see it, in (group, client, message) order."""
    by_stream = attribute(states, ledger)
    out = []
    for state in sorted(states, key=lambda s: (s.plan.group, s.plan.index, s.message)):
        entries = by_stream[state.key]
        expected = await expected_text(http, mock_url, state, entries, request_model)
        out.append(observation(state, expected, t0, tuple(e.id for e in entries)))
    return out


async def expected_text(
    http: httpx.AsyncClient,
    mock_url: str,
    state: StreamState,
    entries: Sequence[LedgerEntry],
    request_model: str,
) -> str | None:
    """What a completed upstream request of this stream wrote, else the mock's preview of the
    request the server sent (or, when none reached the mock, of the client's own request)."""
    for e in entries:
        if e.outcome == "completed" and e.status == 200:
            return e.text
    headers: dict[str, str] = {}
    if entries:
        body: dict[str, Any] = dict(entries[-1].body)
        headers = {
            k: str(v) for k, v in entries[-1].headers.items() if k.lower().startswith("x-mock-")
        }
    else:
        body = {
            "model": request_model,
            "messages": [{"role": "user", "content": state.prompt}],
            "stream": True,
        }
    # A preview answers what the request would stream, faults aside.
    headers.pop("x-mock-fault", None)
    try:
        response = await http.post(f"{mock_url}/_mock/preview", json=body, headers=headers)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    text = response.json().get("text")
    return text if isinstance(text, str) else None


def observation(
    state: StreamState,
    expected: str | None,
    t0: float,
    ledger_ids: tuple[str, ...] | None = None,
) -> StreamObservation:
    records = state.records
    last = records[-1] if records else None
    base = state.sent_at if state.sent_at is not None else 0.0
    raw = [a for r in records for a in r.arrivals]
    notes = list(state.notes)
    if state.dedupe_from is not None:
        position, after = state.dedupe_from
        kept = raw[:position] + [a for a in raw[position:] if a.index > after]
        if len(kept) != len(raw):
            notes.append(f"discarded {len(raw) - len(kept)} re-sent tokens <= index {after}")
        raw = kept
    arrivals = tuple(Arrival(a.index, a.content, a.t - base, a.kind) for a in raw)
    heartbeats = tuple(sorted(t - base for r in records for t in r.heartbeats))
    close_code = next(iter(state.close_codes), None)
    if close_code is None and last is not None:
        close_code = last.close_code
    outcome = (last.outcome if last is not None else None) or "timeout"
    ended_t = last.ended_at - base if last is not None and last.ended_at is not None else None
    failed = next((r for r in records if r.error_code), None)
    return StreamObservation(
        key=state.key,
        group=state.plan.group_name,
        client=state.plan.index,
        message=state.message,
        prompt=state.prompt,
        transport=last.transport if last is not None else state.plan.transport,
        arrivals=arrivals,
        outcome=outcome,
        finish_reason=last.finish_reason if last is not None else None,
        error_code=failed.error_code if failed is not None else None,
        error_retryable=failed.error_retryable if failed is not None else None,
        error_message=failed.error_message if failed is not None else None,
        close_code=close_code,
        sent_at_epoch=state.sent_at_epoch,
        cancelled_at_epoch=state.cancelled_at_epoch,
        ended_t=ended_t,
        sent_t=max(0.0, base - t0) if state.sent_at is not None else 0.0,
        attempts=len(records) + sum(r.reconnects for r in records),
        expected_text=expected,
        notes=tuple(notes),
        ledger_ids=ledger_ids,
        heartbeats=heartbeats,
        usage=last.usage if last is not None else None,
        announced_tokens=last.expected_tokens if last is not None else None,
        announced_heartbeat_ms=state.announced_heartbeat_ms,
        errors_seen=tuple(state.errors_seen),
        cancelled_index=last.cancelled_index if last is not None else None,
        page=state.page,
        shown=tuple((t - state.sent_at_epoch, text) for t, text in state.shown),
        saved_text=state.saved,
    )

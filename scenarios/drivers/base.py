"""What every driver shares: the client's context, the live view of a run, one stream's state.

A driver plays one simulated client of a scenario against the target: it opens connections
the way the target's profile says, sends each message, carries out the group's actions
(cancel, leave, drop, resend, resume) and its reconnects, and leaves a :class:`StreamState`
per message for the observation. All drivers have one signature, :class:`Driver`; the runner
picks one with :func:`scenarios.drivers.driver_for`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scenarios import model
from scenarios.checks import ProbeResult
from scenarios.clients.records import StreamRecord
from scenarios.errors import HarnessError
from scenarios.plan import ClientPlan
from scenarios.profiles.frames import RequestValues
from scenarios.profiles.schema import Profile
from scenarios.report import TimelineEvent

__all__ = [
    "ClientContext",
    "Driver",
    "Endpoints",
    "Live",
    "StreamState",
    "TargetUnreachable",
]


class TargetUnreachable(HarnessError):
    """The target could not be reached at all: the run is an error, not a finding."""


@dataclass
class Live:
    """What the run shares between clients, scheduler and sampler while it runs."""

    t0: float = 0.0
    records: list[StreamRecord] = field(default_factory=list)  # every attempt of every stream
    events: list[TimelineEvent] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # process name -> log file
    timers: list[asyncio.Task[None]] = field(default_factory=list)  # toxic removals
    probes: list[ProbeResult] = field(default_factory=list)  # protocol probe steps
    # Shared by the clients of a run and released when they are done (a browser), by name.
    resources: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # per client group: (tokens its page received, the page's final PNG screenshot)
    screenshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def tokens(self) -> int:
        return sum(len(r.arrivals) for r in self.records)

    def note(self, what: str) -> None:
        self.events.append(TimelineEvent(time.perf_counter() - self.t0, what))


@dataclass
class StreamState:
    """One logical stream (a message) while it runs: its records (one per attempt for
    transports that cannot continue a record) and what happened to it."""

    plan: ClientPlan
    message: int
    records: list[StreamRecord] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    cancelled_at_epoch: float | None = None
    sent_at: float | None = None
    sent_at_epoch: float = 0.0
    notes: list[str] = field(default_factory=list)
    # (arrivals so far, last index seen) when a resend started a new generation from 0
    dedupe_from: tuple[int, int] | None = None
    # the heartbeat interval the server announced on the connection (v1 hello)
    announced_heartbeat_ms: float | None = None
    # errors of attempts the client continued after (code, retryable)
    errors_seen: list[tuple[str, bool | None]] = field(default_factory=list)
    # browser pages: the frontend, what its streaming element showed (epoch s, text) and the
    # answer it saved in its history
    page: str | None = None
    shown: list[tuple[float, str]] = field(default_factory=list)
    saved: str | None = None

    @property
    def key(self) -> str:
        return f"{self.plan.group_name}/c{self.plan.index}/m{self.message}"

    @property
    def prompt(self) -> str:
        return self.plan.prompts[self.message]

    @property
    def last(self) -> StreamRecord:
        return self.records[-1]

    def arrivals_count(self) -> int:
        return sum(len(r.arrivals) for r in self.records)

    def last_index(self) -> int:
        indexes = [a.index for r in self.records for a in r.arrivals]
        return max(indexes, default=-1)

    def add_close(self, code: int) -> None:
        if not self.close_codes or self.close_codes[-1] != code:
            self.close_codes.append(code)


@dataclass(frozen=True)
class Endpoints:
    """The front of the chain the clients talk to (nginx, a fault proxy or the server)."""

    http_url: str  # root URL, no trailing slash
    ws_url: str


@dataclass
class ClientContext:
    """Everything a driver needs to play one client."""

    plan: ClientPlan
    group: model.ClientGroup
    scenario: model.Scenario
    profile: Profile
    endpoints: Endpoints
    live: Live
    states: list[StreamState]
    model: str  # the model name clients ask the target for
    headers: Mapping[str, str] = field(default_factory=dict)

    def new_state(self, message: int) -> StreamState:
        state = StreamState(self.plan, message)
        self.states.append(state)
        return state

    def track(self, state: StreamState, record: StreamRecord) -> None:
        """Count ``record`` as an attempt of ``state`` (and in the live view)."""
        state.records.append(record)
        self.live.records.append(record)
        if state.sent_at is None and record.sent_at is not None:
            state.sent_at, state.sent_at_epoch = record.sent_at, record.sent_at_epoch or 0.0

    def messages(self, state: StreamState) -> list[dict[str, Any]]:
        return [{"role": "user", "content": state.prompt}]

    def values(self, state: StreamState) -> RequestValues:
        return RequestValues(
            prompt=state.prompt,
            model=self.model,
            messages=self.messages(state),
            client_id=self.plan.url_id,
            stream_id=f"{self.plan.client_id}-m{state.message}",
            max_tokens=self.group.max_tokens,
        )

    def tool_fields(self) -> dict[str, Any]:
        """``tools`` and ``tool_choice`` of a chat, where the group offers tools."""
        out: dict[str, Any] = {}
        if self.group.tools:
            out["tools"] = self.group.tools
        if self.group.tool_choice is not None:
            out["tool_choice"] = self.group.tool_choice
        return out

    def connect_values(self) -> RequestValues:
        """What a connection's URL and headers may name before any message: the client."""
        return RequestValues(
            prompt="",
            model=self.model,
            messages=(),
            client_id=self.plan.url_id,
            stream_id="",
            max_tokens=self.group.max_tokens,
        )

    async def think(self, message: int) -> None:
        if message and self.plan.think_ms[message - 1]:
            await asyncio.sleep(self.plan.think_ms[message - 1] / 1000)


class Driver(Protocol):
    async def __call__(self, ctx: ClientContext) -> None: ...

"""The scenario runner: stand the stack up, play the clients and the faults, check, tear down.

One scenario run, for one target and one root seed:

1. plan (pure): the fault schedule and each client's timing and prompts, all from the seed
   (:func:`plan_run`); two runs with the same seed get equal plans;
2. start the stack (``scenarios.stack``) with the mock and fault proxy seeded from the same
   tree; post the scenario's mock rules; read the server's idle ``/stats``;
3. apply the toxics due at start, then start the clients and a scheduler that fires the
   other actions after T ms or once N tokens reached the clients (counted over all streams);
4. when every client is done: wait for the mock's ledger to record how each upstream request
   ended, read ``/stats`` until it is back to idle (or a deadline), ask the mock for the
   expected answer of each stream, and run the checks (``scenarios.checks``);
5. stop the stack, whatever happened (``Stack`` guarantees it).

Missing nginx skips the scenario with the reason; a stack that fails to start, or a target
that cannot be reached, makes the run an ``error`` with the reason and the log files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from scenarios import model
from scenarios.checks import (
    Arrival,
    LedgerEntry,
    RunObservation,
    StreamObservation,
    figures,
    run_checks,
)
from scenarios.report import ScenarioResult, TimelineEvent
from scenarios.seeds import SeedTree

__all__ = [
    "ClientPlan",
    "PlannedAction",
    "RunOptions",
    "RunPlan",
    "describe_plan",
    "plan_run",
    "replay_command",
    "run_scenario",
    "target_kind",
]

SERVER_ENV_PREFIX = "STREAMHARNESS_SERVER_"
TargetKind = Literal["reference", "naive", "url"]
Progress = Callable[[str], None]

# Words for the prompts: the seed picks one per stream so prompts (and so the mock's seeded
# answers) vary between seeds but never between replays of one seed.
_WORDS = (
    "rivers",
    "lighthouses",
    "bees",
    "glaciers",
    "compilers",
    "tides",
    "owls",
    "bridges",
    "comets",
    "ferns",
    "harbours",
    "violins",
)


def target_kind(target: str) -> TargetKind:
    return target if target in ("reference", "naive") else "url"  # type: ignore[return-value]


def replay_command(seed: int, scenario: str, target: str = "reference") -> str:
    cmd = f"streamharness replay {seed} {scenario}"
    return cmd if target == "reference" else f"{cmd} --target {target}"


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class PlannedAction:
    """One fault or server event, with its trigger resolved and its seeded delay drawn."""

    label: str
    kind: Literal["add_toxic", "restart_server"]
    after_tokens: int | None
    after_ms: float | None  # None with after_tokens None: at start
    delay_ms: float  # seeded jitter added to the trigger
    proxy: str | None = None
    toxic: Mapping[str, Any] | None = None
    duration_ms: int | None = None

    @property
    def at_start(self) -> bool:
        return self.after_tokens is None and self.after_ms is None and self.delay_ms == 0


@dataclass(frozen=True)
class ClientPlan:
    group: int
    group_name: str
    index: int
    client_id: str  # unique per client; names it in prompts and reports
    transport: str
    start_delay_ms: float
    think_ms: tuple[float, ...]  # before each message after the first
    prompts: tuple[str, ...]
    connect_id: str = ""  # the id in /ws/chat/{id} (the group's when shared)

    @property
    def url_id(self) -> str:
        return self.connect_id or self.client_id


@dataclass(frozen=True)
class RunPlan:
    scenario: str
    seed: int
    mock_seed: int
    proxy_seed: int
    server_seed: int
    actions: tuple[PlannedAction, ...]
    clients: tuple[ClientPlan, ...]


def plan_run(scenario: model.Scenario, seed: int, target: str = "reference") -> RunPlan:
    """Everything a run will do that is decided in advance, as a pure function of the seed."""
    tree = SeedTree(seed, scenario.name)
    faults = tree.faults()
    actions: list[PlannedAction] = []
    for toxic in scenario.toxics:
        delay = faults.uniform(0, toxic.jitter_ms) if toxic.jitter_ms else 0.0
        actions.append(
            PlannedAction(
                label=f"{toxic.type} toxic {toxic.toxic_name!r} on the {toxic.proxy} proxy "
                f"({toxic.stream}, {toxic.trigger})",
                kind="add_toxic",
                after_tokens=toxic.after_tokens,
                after_ms=toxic.after_ms,
                delay_ms=round(delay, 3),
                proxy=toxic.proxy,
                toxic={
                    "name": toxic.toxic_name,
                    "type": toxic.type,
                    "stream": toxic.stream,
                    "toxicity": toxic.toxicity,
                    "attributes": dict(toxic.attributes),
                },
                duration_ms=toxic.duration_ms,
            )
        )
    for event in scenario.events:
        delay = faults.uniform(0, event.jitter_ms) if event.jitter_ms else 0.0
        actions.append(
            PlannedAction(
                label=f"{event.do} ({event.trigger})",
                kind="restart_server",
                after_tokens=event.after_tokens,
                after_ms=event.after_ms,
                delay_ms=round(delay, 3),
            )
        )
    kind = target_kind(target)
    clients: list[ClientPlan] = []
    for g, group in enumerate(scenario.clients):
        name = scenario.group_name(g)
        transport = _transport(group, kind) or "ws"
        for i in range(group.count):
            rng = tree.client(g, i)
            client_id = f"{name}-{i}"
            start = rng.uniform(0, group.start_jitter_ms) if group.start_jitter_ms else 0.0
            thinks = tuple(
                round(rng.uniform(0, group.think_ms), 3) if group.think_ms else 0.0
                for _ in range(group.messages - 1)
            )
            prompts = tuple(
                group.prompt.format(
                    scenario=scenario.name, client=client_id, message=m, word=rng.choice(_WORDS)
                )
                for m in range(group.messages)
            )
            clients.append(
                ClientPlan(
                    g,
                    name,
                    i,
                    client_id,
                    transport,
                    round(start, 3),
                    thinks,
                    prompts,
                    connect_id=f"{name}-shared" if group.shared_client_id else "",
                )
            )
    return RunPlan(
        scenario=scenario.name,
        seed=seed,
        mock_seed=tree.mock,
        proxy_seed=tree.proxy,
        server_seed=tree.seed("server"),
        actions=tuple(actions),
        clients=tuple(clients),
    )


def describe_plan(plan: RunPlan) -> tuple[str, ...]:
    """The plan in words, for reports (and for comparing two runs' fault schedules)."""
    lines = [
        f"seeds: mock {plan.mock_seed}, fault proxy {plan.proxy_seed}, server {plan.server_seed}"
    ]
    for a in plan.actions:
        lines.append(f"{a.label} + {a.delay_ms:g} ms" if a.delay_ms else a.label)
    for c in plan.clients:
        thinks = ", ".join(f"{t:g}" for t in c.think_ms)
        lines.append(
            f"client {c.client_id} ({c.transport}) starts at +{c.start_delay_ms:g} ms"
            + (f", thinks {thinks} ms" if thinks else "")
        )
    return tuple(lines)


def _transport(
    group: model.ClientGroup, kind: TargetKind, protocol: str | None = None
) -> str | None:
    if kind != "url":
        return group.transport_for(kind)
    # An external server: v1 speakers get the reference's transports, tutorial ones the naive's.
    return group.transport_for("naive" if protocol == "tutorial" else "reference")


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class RunOptions:
    target: str = "reference"
    target_protocol: Literal["v1", "tutorial"] | None = None
    toxiproxy_url: str | None = None
    nginx_binary: str | None = None
    log_dir: Path | None = None
    # Extra time after the clients finished for the ledger and /stats to settle.
    settle_timeout_s: float = 2.0
    # Fixed port for the mock, so an external --target can be configured to call it.
    mock_port: int | None = None
    stats_interval_s: float = 0.05


# ----------------------------------------------------------------------------- execution


@dataclass
class _Live:
    """What the run shares between clients, scheduler and sampler while it runs."""

    t0: float = 0.0
    records: list[Any] = field(default_factory=list)  # StreamRecord of every attempt
    events: list[TimelineEvent] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # process name -> log file
    timers: list[asyncio.Task[None]] = field(default_factory=list)  # toxic removals

    def tokens(self) -> int:
        return sum(len(r.arrivals) for r in self.records)

    def note(self, what: str) -> None:
        self.events.append(TimelineEvent(time.perf_counter() - self.t0, what))


@dataclass
class _StreamState:
    """One logical stream while it runs: its records (one per attempt for transports that
    cannot continue a record) and what happened to it."""

    plan: ClientPlan
    message: int
    records: list[Any] = field(default_factory=list)
    close_codes: list[int] = field(default_factory=list)
    cancelled_at_epoch: float | None = None
    sent_at: float | None = None
    sent_at_epoch: float = 0.0
    notes: list[str] = field(default_factory=list)
    # (arrivals so far, last index seen) when a resend started a new generation from 0
    dedupe_from: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        return f"{self.plan.group_name}/c{self.plan.index}/m{self.message}"

    @property
    def prompt(self) -> str:
        return self.plan.prompts[self.message]

    @property
    def last(self) -> Any:
        return self.records[-1]

    def arrivals_count(self) -> int:
        return sum(len(r.arrivals) for r in self.records)

    def last_index(self) -> int:
        indexes = [a.index for r in self.records for a in r.arrivals]
        return max(indexes, default=-1)


async def run_scenario(
    scenario: model.Scenario,
    seed: int,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run one scenario once; never raises for a scenario problem (it becomes the verdict)."""
    opts = options or RunOptions()
    kind = target_kind(opts.target)
    expected = scenario.expect.get(kind) if kind != "url" else None
    base = {
        "scenario": scenario.name,
        "target": opts.target,
        "seed": seed,
        "description": " ".join(scenario.description.split()),
        "expected": expected,
        "replay": replay_command(seed, scenario.name, opts.target),
    }
    started = time.perf_counter()
    if kind != "url" and kind not in scenario.expect:
        return ScenarioResult(
            verdict="skip",
            reason=f"not aimed at the {kind} server (expect: "
            f"{', '.join(f'{k}: {v}' for k, v in scenario.expect.items())})",
            **base,  # type: ignore[arg-type]
        )
    for g, group in enumerate(scenario.clients):
        if _transport(group, kind, opts.target_protocol) is None:
            return ScenarioResult(
                verdict="skip",
                reason=f"clients[{g}] has no transport for a {opts.target_protocol} target",
                **base,  # type: ignore[arg-type]
            )
    if kind == "url" and scenario.events:
        return ScenarioResult(
            verdict="skip",
            reason="restarts the server, which the harness cannot do to an external target",
            **base,  # type: ignore[arg-type]
        )
    # Imported here: the pure parts of this module (plans) must not need the stack's imports.
    from scenarios.stack import NginxUnavailable, StackError

    plan = plan_run(scenario, seed, opts.target)
    if kind == "url":
        plan = _retarget(plan, scenario, opts)
    live = _Live()
    base["schedule"] = describe_plan(plan)

    def error(reason: str) -> ScenarioResult:
        return ScenarioResult(
            verdict="error",
            reason=reason,
            duration_s=time.perf_counter() - started,
            events=tuple(live.events),
            logs=live.logs,
            **base,  # type: ignore[arg-type]
        )

    try:
        async with asyncio.timeout(scenario.timeout_s + 30):
            obs = await _run(scenario, plan, opts, live, progress)
    except NginxUnavailable as exc:
        return ScenarioResult(verdict="skip", reason=f"nginx unavailable: {exc.reason}", **base)  # type: ignore[arg-type]
    except (StackError, _TargetUnreachable) as exc:
        return error(str(exc))
    except TimeoutError:
        return error(f"the run did not finish within {scenario.timeout_s + 30:.0f} s")
    except (httpx.HTTPError, ValueError, KeyError, OSError) as exc:
        # A harness-side surprise (the mock's admin API answered oddly, a socket error):
        # reported as this run's error with the logs, so the other scenarios still run.
        return error(f"harness error: {exc!r}")
    checks = [c for c in scenario.checks if c.applies_to(kind)]
    results = run_checks(checks, obs)
    failed = [r for r in results if not r.passed]
    return ScenarioResult(
        verdict="fail" if failed else "pass",
        reason="; ".join(f"{r.check}: {r.reason}" for r in failed),
        checks=tuple(results),
        streams=obs.streams,
        events=tuple(live.events),
        figures=figures(obs),
        duration_s=time.perf_counter() - started,
        logs=live.logs,
        **base,  # type: ignore[arg-type]
    )


def _retarget(plan: RunPlan, scenario: model.Scenario, opts: RunOptions) -> RunPlan:
    clients = tuple(
        ClientPlan(
            c.group,
            c.group_name,
            c.index,
            c.client_id,
            _transport(scenario.clients[c.group], "url", opts.target_protocol) or c.transport,
            c.start_delay_ms,
            c.think_ms,
            c.prompts,
            c.connect_id,
        )
        for c in plan.clients
    )
    return RunPlan(
        plan.scenario,
        plan.seed,
        plan.mock_seed,
        plan.proxy_seed,
        plan.server_seed,
        plan.actions,
        clients,
    )


class _TargetUnreachable(Exception):
    pass


async def _run(
    scenario: model.Scenario,
    plan: RunPlan,
    opts: RunOptions,
    live: _Live,
    progress: Progress | None,
) -> RunObservation:
    from scenarios.stack import Stack, StackSpec

    kind = target_kind(opts.target)
    env = {SERVER_ENV_PREFIX + k: v for k, v in scenario.stack.server_env.items()}
    env.setdefault(SERVER_ENV_PREFIX + "UPSTREAM_RETRY_SEED", str(plan.server_seed))
    spec = StackSpec(
        target=opts.target,
        target_protocol=opts.target_protocol,
        nginx=scenario.stack.nginx,
        nginx_read_timeout_s=scenario.stack.nginx_read_timeout_s,
        nginx_binary=opts.nginx_binary,
        upstream_proxy=scenario.stack.upstream_proxy,
        downstream_proxy=scenario.stack.downstream_proxy,
        mock_seed=plan.mock_seed,
        mock_profile=scenario.mock.profile,
        mock_args=("--port", str(opts.mock_port)) if opts.mock_port is not None else (),
        proxy_seed=plan.proxy_seed,
        toxiproxy_url=opts.toxiproxy_url,
        server_env=env if kind == "reference" else {},
    )
    log_dir = None
    if opts.log_dir is not None:
        log_dir = opts.log_dir / f"{scenario.name}-{plan.seed}"
        log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(spec, log_dir=log_dir)
    live.logs = {"directory": str(stack.log_dir)}
    async with stack, httpx.AsyncClient(timeout=10.0) as http:
        live.logs.update({k: str(v) for k, v in stack.logs.items()})
        if progress:
            progress("stack up")
        await _post_rules(http, stack.mock_url, scenario.mock)
        if kind == "url":
            await _check_reachable(http, stack.client_http_url)
        baseline = await _stats(http, stack.server_url)
        peak: dict[str, float] = {}
        sampler = asyncio.create_task(_sample_stats(http, stack.server_url, peak, opts))
        try:
            for action in plan.actions:
                if action.at_start:
                    await _fire(action, stack, http, live, quiet=True)
            live.t0 = time.perf_counter()
            for action in plan.actions:
                if action.at_start:
                    live.note(f"{action.label} applied before the clients started")
            scheduler = asyncio.create_task(_schedule(plan, stack, http, live))
            states: list[_StreamState] = []
            clients = [
                asyncio.create_task(_client(c, scenario, stack, kind, live, states))
                for c in plan.clients
            ]
            watcher = (
                asyncio.create_task(_progress(live, states, len(plan.clients), progress))
                if progress
                else None
            )
            try:
                await asyncio.gather(*clients)
            finally:
                for task in clients:
                    task.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
                scheduler.cancel()
                for timer in live.timers:
                    timer.cancel()
                await asyncio.gather(scheduler, *live.timers, return_exceptions=True)
                if watcher is not None:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
            if not scheduler.cancelled() and scheduler.exception() is not None:
                # A fault that could not be applied makes the run meaningless: say so.
                raise scheduler.exception()  # type: ignore[misc]
            for action in plan.actions:
                if not any(e.what.startswith(action.label) for e in live.events):
                    live.note(f"{action.label} never fired")
            ledger = await _settled_ledger(http, stack.mock_url, opts.settle_timeout_s)
            after = await _idle_stats(http, stack.server_url, baseline, scenario, opts)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        streams = await _observe(http, stack.mock_url, scenario, states, ledger, live.t0)
    obs = RunObservation(
        streams=tuple(streams),
        ledger=tuple(ledger),
        stats_baseline=baseline,
        stats_after=after,
        stats_peak=peak,
    )
    return obs


# ------------------------------------------------------------------------ mock and stats


async def _post_rules(http: httpx.AsyncClient, mock_url: str, mock: model.MockSpec) -> None:
    from scenarios.stack import StackError

    rules = mock.rules_to_post()
    if not rules:
        return
    response = await http.post(f"{mock_url}/_mock/rules", json=rules)
    if response.status_code >= 300:
        raise StackError(
            f"the mock refused the scenario's rules: HTTP {response.status_code} "
            f"{response.text.strip()[:300]}"
        )


async def _check_reachable(http: httpx.AsyncClient, url: str) -> None:
    try:
        await http.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        raise _TargetUnreachable(f"target {url} is unreachable: {exc!r}") from None


async def _stats(http: httpx.AsyncClient, server_url: str) -> dict[str, float] | None:
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


async def _sample_stats(
    http: httpx.AsyncClient, server_url: str, peak: dict[str, float], opts: RunOptions
) -> None:
    while True:
        stats = await _stats(http, server_url)
        for key, value in (stats or {}).items():
            peak[key] = max(peak.get(key, value), value)
        await asyncio.sleep(opts.stats_interval_s)


async def _idle_stats(
    http: httpx.AsyncClient,
    server_url: str,
    baseline: Mapping[str, float] | None,
    scenario: model.Scenario,
    opts: RunOptions,
) -> dict[str, float] | None:
    """``/stats`` once it is back to the idle baseline for the leak check's keys, or at the
    deadline: a leak is what is still there after the server had time to clean up."""
    leak_checks = [c for c in scenario.checks if isinstance(c, model.NoLeaks)]
    keys = {k for c in leak_checks for k in c.keys}
    slack = max((c.slack for c in leak_checks), default=0)
    deadline = time.monotonic() + opts.settle_timeout_s
    while True:
        stats = await _stats(http, server_url)
        if stats is None or baseline is None or not keys:
            return stats
        if all(stats.get(k, 0) <= baseline.get(k, 0) + slack for k in keys):
            return stats
        if time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def _ledger(http: httpx.AsyncClient, mock_url: str) -> list[dict[str, Any]]:
    response = await http.get(f"{mock_url}/_mock/requests")
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


async def _settled_ledger(
    http: httpx.AsyncClient, mock_url: str, timeout_s: float
) -> list[LedgerEntry]:
    """The ledger once every upstream request has ended (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        entries = await _ledger(http, mock_url)
        if all(e.get("ended_at") is not None for e in entries) or time.monotonic() > deadline:
            return [LedgerEntry.from_dict(e) for e in entries]
        await asyncio.sleep(0.05)


async def _expected_text(
    http: httpx.AsyncClient,
    mock_url: str,
    scenario: model.Scenario,
    state: _StreamState,
    ledger: Sequence[LedgerEntry],
) -> str | None:
    """The mock's deterministic answer to this stream's request: what a completed upstream
    request wrote, else the mock's preview of the request the server sent (or would send)."""
    entries = [e for e in ledger if e.matches(state.prompt)]
    for e in entries:
        if e.outcome == "completed" and e.status == 200:
            return e.text
    if entries:
        body: dict[str, Any] = dict(entries[-1].body)
        headers = {
            k: str(v) for k, v in entries[-1].headers.items() if k.lower().startswith("x-mock-")
        }
    else:
        group = scenario.clients[state.plan.group]
        body = {
            "model": scenario.mock.model,
            "messages": [{"role": "user", "content": state.prompt}],
            "stream": True,
        }
        if group.max_tokens is not None:
            body["max_tokens"] = group.max_tokens
        headers = {}
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


# --------------------------------------------------------------------------- scheduling


async def _fire(
    action: PlannedAction,
    stack: Any,
    http: httpx.AsyncClient,
    live: _Live,
    *,
    quiet: bool = False,
) -> None:
    if action.kind == "restart_server":
        live.note(f"{action.label}: restarting the server")
        await stack.restart_server()
        live.note("server restarted")
        return
    assert action.toxic is not None
    name = stack.upstream_proxy_name if action.proxy == "upstream" else stack.downstream_proxy_name
    url = f"{stack.proxy_api_url}/proxies/{name}/toxics"
    response = await http.post(url, json=dict(action.toxic))
    if response.status_code != 200:
        from scenarios.stack import StackError

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
    http: httpx.AsyncClient, url: str, action: PlannedAction, live: _Live
) -> None:
    assert action.duration_ms is not None
    await asyncio.sleep(action.duration_ms / 1000)
    with contextlib.suppress(httpx.HTTPError):
        await http.delete(url)
        live.note(f"{action.label}: removed after {action.duration_ms} ms")


async def _schedule(plan: RunPlan, stack: Any, http: httpx.AsyncClient, live: _Live) -> None:
    pending = [a for a in plan.actions if not a.at_start]
    await asyncio.gather(*(_when_due(a, stack, http, live) for a in pending))


async def _when_due(
    action: PlannedAction, stack: Any, http: httpx.AsyncClient, live: _Live
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


async def _progress(
    live: _Live, states: list[_StreamState], clients: int, progress: Progress
) -> None:
    while True:
        done = sum(1 for s in states if s.records and s.last.done)
        progress(f"{done}/{len(states)} streams ended, {live.tokens()} tokens, {clients} clients")
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------------------ clients


async def _client(
    plan: ClientPlan,
    scenario: model.Scenario,
    stack: Any,
    kind: TargetKind,
    live: _Live,
    states: list[_StreamState],
) -> None:
    group = scenario.clients[plan.group]
    if plan.start_delay_ms:
        await asyncio.sleep(plan.start_delay_ms / 1000)
    driver = _DRIVERS[plan.transport]
    await driver(plan, group, scenario, stack, kind, live, states)


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


async def _open_v1(stack: Any, plan: ClientPlan, group: model.ClientGroup, deadline: float) -> Any:
    """Open a v1 connection, retrying while the server is away (a restart), until deadline."""
    from scenarios.clients import ClientConnectError
    from scenarios.clients.aio import V1Connection

    while True:
        try:
            return await V1Connection.open(
                stack.client_ws_url,
                plan.url_id,
                read_delay_s=group.read_delay_ms / 1000,
                hello_timeout_s=max(0.5, min(5.0, deadline - time.perf_counter())),
            )
        except ClientConnectError as exc:
            if time.perf_counter() + 0.1 > deadline:
                raise _TargetUnreachable(
                    f"{plan.client_id} could not connect to {stack.client_ws_url}: {exc}"
                ) from None
            await asyncio.sleep(0.1)


async def _drive_v1(
    plan: ClientPlan,
    group: model.ClientGroup,
    scenario: model.Scenario,
    stack: Any,
    kind: TargetKind,
    live: _Live,
    states: list[_StreamState],
) -> None:
    deadline = time.perf_counter() + group.timeout_s * group.messages + 5
    conn = await _open_v1(stack, plan, group, deadline)
    assert conn.hello is not None
    session_token = conn.hello.resume_token
    if group.concurrent:
        try:
            await _concurrent_v1(conn, plan, group, scenario, live, states)
        finally:
            await conn.close()
        return
    try:
        for m in range(group.messages):
            if m and plan.think_ms[m - 1]:
                await asyncio.sleep(plan.think_ms[m - 1] / 1000)
            stream_deadline = time.perf_counter() + group.timeout_s
            state, record = await _start_v1(conn, plan, m, group, scenario, live, states)
            gone = False
            for action in group.actions:
                left = stream_deadline - time.perf_counter()
                if not await conn.wait_tokens(record.id, action.at_token + 1, max(0.0, left)):
                    state.notes.append(f"{action.do} at token {action.at_token} never ran")
                    break
                if action.do == "cancel":
                    await conn.cancel(record.id)
                    state.cancelled_at_epoch = record.cancelled_at_epoch
                    state.notes.append(f"cancelled after token {action.at_token}")
                    continue
                state.cancelled_at_epoch = time.time()
                # What is already buffered on our side is drained at once, not at reading
                # speed: the socket is gone, and a slow reader would otherwise take minutes.
                conn.read_delay_s = 0.0
                await conn.drop()
                state.notes.append(f"dropped the socket after token {action.at_token}")
                if action.do == "drop":
                    gone = True
                    break
                reopened = await _reopen_v1(
                    stack, plan, group, state, action.reconnect_after_ms, stream_deadline
                )
                if reopened is None:
                    gone = True
                    break
                conn = reopened
                await _continue_v1(conn, record, state, action.do, session_token)
            if gone:
                record.finish("disconnected", time.perf_counter())
                return
            reconnects = 0
            while True:
                left = stream_deadline - time.perf_counter()
                await conn.wait(record.id, max(0.0, left))
                if (
                    group.on_disconnect != "none"
                    and record.outcome == "error"
                    and record.error_retryable
                    and not conn.closed
                ):
                    # A retryable error may announce the close (server_shutdown, then 1001).
                    await conn.wait_closed(1.0)
                if conn.closed and conn.close_code is not None:
                    _add_close(state, conn.close_code)
                lost = record.outcome == "disconnected" or (
                    record.outcome == "error" and record.error_retryable and conn.closed
                )
                if (
                    not lost
                    or group.on_disconnect == "none"
                    or reconnects >= group.reconnects
                    or time.perf_counter() >= stream_deadline
                ):
                    break
                reconnects += 1
                state.notes.append(
                    f"connection lost after {len(record.arrivals)} tokens "
                    f"({record.outcome}, close {conn.close_code}); reconnecting"
                )
                await conn.close()
                reopened = await _reopen_v1(
                    stack, plan, group, state, group.reconnect_after_ms, stream_deadline
                )
                if reopened is None:
                    break
                conn = reopened
                mode = "drop_and_resume" if group.on_disconnect == "resume" else "drop_and_resend"
                await _continue_v1(conn, record, state, mode, session_token)
            if conn.closed:
                break
    finally:
        await conn.close()


async def _start_v1(
    conn: Any,
    plan: ClientPlan,
    m: int,
    group: model.ClientGroup,
    scenario: model.Scenario,
    live: _Live,
    states: list[_StreamState],
) -> tuple[_StreamState, Any]:
    """Send message ``m`` as its own stream on a v1 connection and record it."""
    state = _StreamState(plan, m)
    states.append(state)
    record = await conn.chat(
        _messages(state.prompt),
        id=f"m{m}",
        model=scenario.mock.model,
        max_tokens=group.max_tokens,
    )
    _track(state, live, record)
    return state, record


def _track(state: _StreamState, live: _Live, record: Any) -> None:
    """Count ``record`` as the stream of ``state`` (and in the live view), sent when it was."""
    state.records.append(record)
    live.records.append(record)
    state.sent_at, state.sent_at_epoch = record.sent_at, record.sent_at_epoch or 0.0


async def _reopen_v1(
    stack: Any,
    plan: ClientPlan,
    group: model.ClientGroup,
    state: _StreamState,
    after_ms: float,
    deadline: float,
) -> Any:
    """Wait ``after_ms``, then connect again; None (with a note) when the target is gone.
    The stream then ends as it is (its outcome tells the checks); not a harness error."""
    await asyncio.sleep(after_ms / 1000)
    try:
        return await _open_v1(stack, plan, group, deadline)
    except _TargetUnreachable as exc:
        state.notes.append(f"could not reconnect: {exc}")
        return None


async def _wait_all(conn: Any, waits: list[tuple[_StreamState, Any]], deadline: float) -> None:
    """Wait for each stream (keyed as ``conn.wait`` wants it) and note how the socket closed."""
    for state, key in waits:
        await conn.wait(key, max(0.0, deadline - time.perf_counter()))
        if conn.closed and conn.close_code is not None:
            _add_close(state, conn.close_code)


def _add_close(state: _StreamState, code: int) -> None:
    if not state.close_codes or state.close_codes[-1] != code:
        state.close_codes.append(code)


async def _continue_v1(
    conn: Any, record: Any, state: _StreamState, mode: str, session_token: str
) -> None:
    """Continue a stream on a new connection: resume it (falling back to a resend when the
    server no longer knows it), or resend the chat with the same id."""
    after = state.last_index()
    if mode == "drop_and_resume" and record.stream_id and record.resume_token:
        errors_before = len(conn.recorder.connection_errors)
        starts_before = record.starts

        def answered() -> bool:
            return (
                record.done
                or record.starts > starts_before
                or _grew(record, after)
                or len(conn.recorder.connection_errors) > errors_before
            )

        await conn.resume(record.stream_id, after, record.resume_token, record=record)
        state.notes.append(f"resumed after index {after}")
        # Wait for the answer to the resume: a start or token, or an error. An unknown
        # stream's error names only the stream, so it comes as a connection-level error.
        await conn.wait_until(answered, 5.0)
        codes = [e.code for e in conn.recorder.connection_errors[errors_before:]]
        if record.outcome == "error":
            codes.append(record.error_code)
        refused = [c for c in codes if c in ("unknown_stream", "stream_expired")]
        if not refused:
            return
        state.notes.append(f"resume refused ({refused[0]}); resending the chat")
        # The server lost the stream (a restart): the resend starts a new generation that
        # begins at index 0. The client already has 0..after and drops them again, as any
        # client that keys tokens by index does.
        state.dedupe_from = (state.arrivals_count(), after)
        # The old session is gone with the stream: a fresh chat, in this connection's session.
        await conn.chat(_messages(state.prompt), record=record, model=None)
        state.notes.append("sent the chat again as a new generation")
        return
    await conn.chat(
        _messages(state.prompt),
        record=record,
        resume_token=session_token,
        after=after,
        model=None,
    )
    state.notes.append(f"resent the chat after index {after}")


def _grew(record: Any, after: int) -> bool:
    return any(a.index > after for a in record.arrivals[-3:])


class _TutorialClient:
    """A tutorial-shaped client: one socket at a time, tokens belong to the last message."""

    def __init__(
        self,
        plan: ClientPlan,
        group: model.ClientGroup,
        scenario: model.Scenario,
        stack: Any,
        kind: TargetKind,
        live: _Live,
    ) -> None:
        from scenarios.clients import END_MARKER

        self.plan, self.group, self.stack, self.live = plan, group, stack, live
        self.model = scenario.mock.model
        # The naive server ends streams only with the in-band marker, so its tutorial client
        # has to watch for it; against a server with an out-of-band end it is just text.
        self.end_marker = END_MARKER if kind == "naive" else None
        self.conn: Any = None

    async def open(self) -> None:
        from scenarios.clients import ClientConnectError
        from scenarios.clients.aio import TutorialConnection

        try:
            self.conn = await TutorialConnection.open(
                self.stack.client_ws_url,
                self.plan.url_id,
                end_marker=self.end_marker,
                read_delay_s=self.group.read_delay_ms / 1000,
            )
        except ClientConnectError as exc:
            raise _TargetUnreachable(f"{self.plan.client_id}: {exc}") from None

    async def send(self, state: _StreamState) -> Any:
        record = await self.conn.send(_messages(state.prompt), model=self.model)
        state.records.append(record)
        self.live.records.append(record)
        if state.sent_at is None:
            state.sent_at, state.sent_at_epoch = record.sent_at, record.sent_at_epoch
        return record

    async def stream(self, state: _StreamState) -> bool:
        """Play one message; False when the client is gone (dropped for good or closed)."""
        group = self.group
        deadline = time.perf_counter() + group.timeout_s
        record = await self.send(state)
        for action in group.actions:
            need = action.at_token + 1
            left = max(0.0, deadline - time.perf_counter())
            reached = await self.conn.wait_until(
                functools.partial(_reached, state, record, need), left
            )
            if not reached:
                state.notes.append(f"{action.do} at token {action.at_token} never ran")
                break
            # The tutorial protocol has no cancel: closing the socket is all a client can do.
            state.cancelled_at_epoch = time.time()
            self.conn.read_delay_s = 0.0
            await self.conn.drop()
            state.notes.append(f"dropped the socket after token {action.at_token}")
            if action.do in ("cancel", "drop"):
                return False
            await asyncio.sleep(action.reconnect_after_ms / 1000)
            await self.open()
            record = await self.send(state)
            state.notes.append("resent the message on a new socket")
        reconnects = 0
        while True:
            await self.conn.wait(record, max(0.0, deadline - time.perf_counter()))
            if self.conn.closed and self.conn.close_code is not None:
                _add_close(state, self.conn.close_code)
            if (
                record.outcome != "disconnected"
                or group.on_disconnect == "none"
                or reconnects >= group.reconnects
                or time.perf_counter() >= deadline
            ):
                break
            reconnects += 1
            state.notes.append(f"connection lost after {state.arrivals_count()} tokens; resending")
            await asyncio.sleep(group.reconnect_after_ms / 1000)
            await self.open()
            record = await self.send(state)
        return not self.conn.closed


async def _concurrent_v1(
    conn: Any,
    plan: ClientPlan,
    group: model.ClientGroup,
    scenario: model.Scenario,
    live: _Live,
    states: list[_StreamState],
) -> None:
    """All messages at once on one connection, each its own stream (keyed by id)."""
    deadline = time.perf_counter() + group.timeout_s
    mine = []
    for m in range(group.messages):
        state, record = await _start_v1(conn, plan, m, group, scenario, live, states)
        mine.append((state, record.id))
    await _wait_all(conn, mine, deadline)


async def _concurrent_tutorial(
    client: _TutorialClient, plan: ClientPlan, group: model.ClientGroup, states: list[_StreamState]
) -> None:
    """All messages at once on one tutorial socket. Its messages carry no id, so a client can
    only attribute tokens to the message it sent last (the protocol's flaw, kept as is)."""
    deadline = time.perf_counter() + group.timeout_s
    mine = []
    for m in range(group.messages):
        state = _StreamState(plan, m)
        states.append(state)
        mine.append((state, await client.send(state)))
    await _wait_all(client.conn, mine, deadline)


def _reached(state: _StreamState, record: Any, need: int) -> bool:
    return state.arrivals_count() >= need or bool(record.done)


async def _drive_tutorial(
    plan: ClientPlan,
    group: model.ClientGroup,
    scenario: model.Scenario,
    stack: Any,
    kind: TargetKind,
    live: _Live,
    states: list[_StreamState],
) -> None:
    client = _TutorialClient(plan, group, scenario, stack, kind, live)
    await client.open()
    if group.concurrent:
        try:
            await _concurrent_tutorial(client, plan, group, states)
        finally:
            await client.conn.close()
        return
    try:
        for m in range(group.messages):
            if m and plan.think_ms[m - 1]:
                await asyncio.sleep(plan.think_ms[m - 1] / 1000)
            state = _StreamState(plan, m)
            states.append(state)
            if not await client.stream(state):
                break
    finally:
        await client.conn.close()


async def _drive_http(
    plan: ClientPlan,
    group: model.ClientGroup,
    scenario: model.Scenario,
    stack: Any,
    kind: TargetKind,
    live: _Live,
    states: list[_StreamState],
) -> None:
    from scenarios.clients import ClientConnectError, StreamRecord, aio

    base = stack.client_http_url
    async with httpx.AsyncClient(timeout=group.timeout_s) as http:
        for m in range(group.messages):
            if m and plan.think_ms[m - 1]:
                await asyncio.sleep(plan.think_ms[m - 1] / 1000)
            state = _StreamState(plan, m)
            states.append(state)
            messages = _messages(state.prompt)
            args: dict[str, Any] = {"model": scenario.mock.model, "max_tokens": group.max_tokens}
            if plan.transport == "blocking":
                record = await aio.blocking(
                    base, messages, timeout_s=group.timeout_s, client=http, **args
                )
                _track(state, live, record)
                continue
            try:
                created = await aio.create_stream(base, messages, client=http, **args)
            except ClientConnectError as exc:
                failed = StreamRecord(transport=plan.transport, id=f"m{m}")  # type: ignore[arg-type]
                failed.error_message = str(exc)
                failed.error_code = f"http_{exc.status}" if exc.status else "connect"
                failed.finish("error", time.perf_counter())
                state.records.append(failed)
                continue
            if plan.transport == "polling":
                record = StreamRecord(
                    transport="polling",
                    id=created.stream_id,
                    stream_id=created.stream_id,
                    sent_at=created.sent_at,
                    sent_at_epoch=created.sent_at_epoch,
                )
                _track(state, live, record)
                await aio.poll(
                    base,
                    stream=created,
                    record=record,
                    interval_s=0.05,
                    timeout_s=group.timeout_s,
                    client=http,
                )
                continue
            record = StreamRecord(
                transport="sse",
                id=created.stream_id,
                stream_id=created.stream_id,
                sent_at=created.sent_at,
                sent_at_epoch=created.sent_at_epoch,
                resume_token=created.resume_token,
            )
            _track(state, live, record)
            deadline = time.perf_counter() + group.timeout_s
            stop = group.actions[0].at_token + 1 if group.actions else None
            await aio.stream_sse(
                base,
                stream=created,
                record=record,
                stop_after_tokens=stop,
                read_delay_s=group.read_delay_ms / 1000,
                timeout_s=group.timeout_s,
                client=http,
            )
            if stop is not None and len(record.arrivals) >= stop:
                action = group.actions[0]
                state.cancelled_at_epoch = time.time()
                state.notes.append(f"closed the event stream after token {action.at_token}")
                if action.do in ("cancel", "drop"):
                    continue
                await asyncio.sleep(action.reconnect_after_ms / 1000)
                last = record.last_event_id if action.do == "drop_and_resume" else None
                state.notes.append(f"reconnected with Last-Event-ID {last}")
                await aio.stream_sse(
                    base,
                    stream=created,
                    record=record,
                    last_event_id=last,
                    read_delay_s=group.read_delay_ms / 1000,
                    timeout_s=max(0.1, deadline - time.perf_counter()),
                    client=http,
                )


_DRIVERS: dict[str, Callable[..., Any]] = {
    "ws": _drive_v1,
    "tutorial": _drive_tutorial,
    "sse": _drive_http,
    "polling": _drive_http,
    "blocking": _drive_http,
}


# -------------------------------------------------------------------------- observation


async def _observe(
    http: httpx.AsyncClient,
    mock_url: str,
    scenario: model.Scenario,
    states: Sequence[_StreamState],
    ledger: Sequence[LedgerEntry],
    t0: float,
) -> list[StreamObservation]:
    out = []
    for state in sorted(states, key=lambda s: (s.plan.group, s.plan.index, s.message)):
        expected = await _expected_text(http, mock_url, scenario, state, ledger)
        out.append(_observation(state, expected, t0))
    return out


def _observation(state: _StreamState, expected: str | None, t0: float) -> StreamObservation:
    records = state.records
    last = records[-1] if records else None
    base = state.sent_at if state.sent_at is not None else 0.0
    raw = [a for r in records for a in r.arrivals if getattr(a, "kind", "token") == "token"]
    notes = list(state.notes)
    if state.dedupe_from is not None:
        position, after = state.dedupe_from
        kept = raw[:position] + [a for a in raw[position:] if a.index > after]
        if len(kept) != len(raw):
            notes.append(f"discarded {len(raw) - len(kept)} re-sent tokens <= index {after}")
        raw = kept
    arrivals = tuple(Arrival(a.index, a.content, a.t - base) for a in raw)
    close_code = next(iter(state.close_codes), None)
    if close_code is None and last is not None:
        close_code = last.close_code
    outcome = (last.outcome if last is not None else None) or "timeout"
    ended_t = last.ended_at - base if last is not None and last.ended_at is not None else None
    error_code = next((r.error_code for r in records if r.error_code), None)
    retryable = next((r.error_retryable for r in records if r.error_code), None)
    return StreamObservation(
        key=state.key,
        group=state.plan.group_name,
        client=state.plan.index,
        message=state.message,
        prompt=state.prompt,
        transport=state.plan.transport,
        arrivals=arrivals,
        outcome=outcome,
        finish_reason=last.finish_reason if last is not None else None,
        error_code=error_code,
        error_retryable=retryable,
        close_code=close_code,
        sent_at_epoch=state.sent_at_epoch,
        cancelled_at_epoch=state.cancelled_at_epoch,
        ended_t=ended_t,
        sent_t=max(0.0, base - t0) if state.sent_at is not None else 0.0,
        attempts=len(records) + sum(getattr(r, "reconnects", 0) for r in records),
        expected_text=expected,
        notes=tuple(notes),
    )

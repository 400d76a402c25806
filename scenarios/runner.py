"""The scenario runner: stand the stack up, play the clients and the faults, check, tear down.

One scenario run, for one target and one root seed:

1. applicability: the scenario's needs (a cancel message, resume, /stats...) against what the
   target can do (:mod:`scenarios.targets`); a target that lacks one skips it with the reason;
2. plan (pure, :mod:`scenarios.plan`): the fault schedule and each client's timing and
   prompts, all from the seed;
3. start the stack (:mod:`scenarios.stack`) with the mock and fault proxy seeded from the same
   tree, the provider on the run's fixed port when one is given; post the scenario's mock
   rules; read the server's idle ``/stats``;
4. apply the toxics due at start, then start the clients (each through the driver its
   target's profile asks for, :mod:`scenarios.drivers`) and the fault scheduler
   (:mod:`scenarios.schedule`);
5. when every client is done: wait for the mock's ledger to record how each upstream request
   ended, read ``/stats`` until it is back to idle (or a deadline), tie each stream to the
   upstream requests it caused and their text (:mod:`scenarios.observe`), and run the checks
   (:mod:`scenarios.checks`);
6. stop the stack, whatever happened (``Stack`` guarantees it).

Missing nginx or redis-server skips the scenario with the reason; a stack that fails to start,
or a target that cannot be reached, makes the run an ``error`` with the reason and the log
files.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

from scenarios import model
from scenarios.checks import RunObservation, StreamObservation, figures, run_checks
from scenarios.drivers import ClientContext, Endpoints, Live, StreamState, driver_for
from scenarios.drivers.base import TargetUnreachable
from scenarios.observe import fetch_stats, idle_stats, observe, sample_stats, settled_ledger
from scenarios.plan import ClientPlan, RunPlan, describe_plan, plan_run
from scenarios.profiles import Profile, load_profile
from scenarios.report import Bound, ScenarioResult
from scenarios.schedule import apply_at_start, note_started, note_unfired, run_schedule
from scenarios.targets import BUILTIN_TARGETS, Target, TargetKind, resolve_target, unmet

if TYPE_CHECKING:
    from reference_server.providers import ProviderName

__all__ = ["RunOptions", "replay_command", "run_scenario"]

SERVER_ENV_PREFIX = "STREAMHARNESS_SERVER_"
Progress = Callable[[str], None]
# How many protocol errors a run's reason lists (each shows the frame).
SHOWN_PROTOCOL_ERRORS = 3


@dataclass(frozen=True)
class RunOptions:
    target: str = "reference"
    # A built-in profile name or a profile file (default: the target's own, v1 for a URL).
    profile: str | None = None
    # A URL target serves the reference server's /stats (the CLI finds out before the run).
    target_stats: bool = False
    # The model the clients ask the target for (default: the scenario's mock.model).
    target_model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Where the scenarios came from, for the replay line: ``--catalogue`` and, per scenario
    # loaded with ``--file``, that file.
    catalogue: str | None = None
    scenario_files: Mapping[str, str] = field(default_factory=dict)
    toxiproxy_url: str | None = None
    nginx_binary: str | None = None
    # Where the reference server keeps its streams, instead of the scenario's stack.store.
    store: Literal["memory", "redis"] | None = None
    redis_binary: str | None = None
    # The API the reference server speaks to the mock (its --provider).
    provider: ProviderName = "openai"
    log_dir: Path | None = None
    # Extra time after the clients finished for the ledger and /stats to settle.
    settle_timeout_s: float = 2.0
    # The provider's port for the whole run, so a URL target is configured once.
    mock_port: int | None = None
    # Restrict the mock to these model names (default: it answers any).
    mock_models: tuple[str, ...] = ()
    # A built-in server's code from this folder instead of the installed one (mutation tests).
    server_pythonpath: str | None = None
    stats_interval_s: float = 0.05

    def resolve(self) -> Target:
        return resolve_target(self.target, self.profile, stats=self.target_stats)


def replay_command(seed: int, scenario: str, options: RunOptions | None = None) -> str:
    """The command that runs ``scenario`` again with ``seed`` against the same target."""
    opts = options or RunOptions()
    args = ["streamharness", "replay", str(seed), scenario]
    if opts.target != "reference":
        args += ["--target", opts.target]
    if opts.profile is not None:
        args += ["--target-profile", opts.profile]
    if opts.mock_port is not None:
        args += ["--mock-port", str(opts.mock_port)]
    if opts.store is not None:
        args += ["--store", opts.store]
    if opts.provider != "openai":
        args += ["--provider", opts.provider]
    if opts.target_model is not None:
        args += ["--target-model", opts.target_model]
    if opts.catalogue is not None:
        args += ["--catalogue", opts.catalogue]
    if scenario in opts.scenario_files:
        args += ["--file", opts.scenario_files[scenario]]
    if opts.toxiproxy_url is not None:
        args += ["--toxiproxy-url", opts.toxiproxy_url]
    if opts.nginx_binary is not None:
        args += ["--nginx", opts.nginx_binary]
    for name in opts.mock_models:
        args += ["--mock-model", name]
    command = shlex.join(args)
    # Headers often carry keys: not printed, but a replay needs them again.
    return command + " (plus your --header options)" if opts.headers else command


async def run_scenario(
    scenario: model.Scenario,
    seed: int,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run one scenario once; never raises for a scenario problem (it becomes the verdict)."""
    opts = options or RunOptions()
    target = opts.resolve()
    kind = target.kind
    declared = scenario
    if opts.store is not None:
        scenario = scenario.on_store(opts.store)
    base = {
        "scenario": scenario.name,
        "target": opts.target,
        "seed": seed,
        "description": " ".join(scenario.description.split()),
        # A built-in target's expectations hold for its own profile only.
        "expected": _expected(declared, scenario, kind)
        if kind == "url" or opts.profile in (None, BUILTIN_TARGETS[kind].profile)
        else None,
        "replay": replay_command(seed, scenario.name, opts),
        "bounds": bounds_of(scenario),
    }
    started = time.perf_counter()
    why_not = unmet(scenario.all_needs, target)
    # A scenario about the shared store's own faults (a Redis restart, a dead owner's lease)
    # has nothing to show on memory, and says so by naming no memory_store_fails.
    moved = declared.stack.store == "redis" != scenario.stack.store
    if why_not is None and moved and not declared.memory_store_fails:
        why_not = "tests the Redis store's own faults; --store memory does not apply"
    if why_not is None:
        why_not = browser_why_not(scenario, target)
    if why_not is not None:
        return ScenarioResult(verdict="skip", reason=why_not, **base)  # type: ignore[arg-type]
    # Imported here: the pure parts of the runner's modules must not need the stack's imports.
    from scenarios.stack import NginxUnavailable, RedisUnavailable, StackError

    plan = plan_run(scenario, seed)
    live = Live()
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
            obs = await _run(scenario, plan, target, opts, live, progress)
    except NginxUnavailable as exc:
        _discard_temporary_logs(live, opts)
        return ScenarioResult(verdict="skip", reason=f"nginx unavailable: {exc.reason}", **base)  # type: ignore[arg-type]
    except RedisUnavailable as exc:
        _discard_temporary_logs(live, opts)
        return ScenarioResult(verdict="skip", reason=f"redis unavailable: {exc}", **base)  # type: ignore[arg-type]
    except (StackError, TargetUnreachable) as exc:
        return error(str(exc))
    except TimeoutError:
        return error(f"the run did not finish within {scenario.timeout_s + 30:.0f} s")
    except Exception as exc:
        # A harness-side surprise (the mock's admin API answered oddly, a socket error, a
        # bug): this run's error with the logs, so the other scenarios still run.
        return error(f"harness error: {exc!r}")
    results = run_checks(scenario.checks, obs, lambda needs: unmet(needs, target))
    screenshots = {name: png for name, (_, png) in sorted(live.screenshots.items())}
    failed = [r for r in results if not r.passed]
    reasons = [f"{r.check}: {r.reason}" for r in failed]
    unreadable = protocol_errors(obs.streams)
    if unreadable:
        reasons.append(f"protocol errors: {unreadable}")
    if not failed:
        _discard_temporary_logs(live, opts)
    return ScenarioResult(
        verdict="fail" if failed else "pass",
        reason="; ".join(reasons),
        checks=tuple(results),
        streams=obs.streams,
        events=tuple(live.events),
        figures=figures(obs),
        duration_s=time.perf_counter() - started,
        logs=live.logs,
        screenshots=screenshots,
        **base,  # type: ignore[arg-type]
    )


def _discard_temporary_logs(live: Live, opts: RunOptions) -> None:
    """Remove the logs of a run that passed or was skipped when no ``--logs`` directory was
    asked for: a temporary directory per run would pile up in /tmp, and only a failed or
    broken run's logs are read (the report names those)."""
    directory = live.logs.get("directory")
    if opts.log_dir is None and directory:
        shutil.rmtree(directory, ignore_errors=True)
        live.logs = {}


def browser_profile_unmet(scenario: model.Scenario, target: Target) -> str | None:
    """Why no bundled frontend can speak to the target for the scenario's browser groups."""
    from scenarios.drivers.browser import page_client

    for group in scenario.clients:
        if group.kind == "browser" and page_client(group.page.client, target.profile) is None:
            return (
                f"browser pages speak protocol v1 or the tutorial shape; profile "
                f"{target.profile.name!r} is neither"
            )
    return None


def browser_why_not(scenario: model.Scenario, target: Target) -> str | None:
    """Why the scenario's browser groups cannot run here (no frontend that speaks the
    target's profile, no Chromium), or None."""
    if not any(g.kind == "browser" for g in scenario.clients):
        return None
    why = browser_profile_unmet(scenario, target)
    if why is not None:
        return why
    from scenarios.browser.session import browser_unavailable

    reason = browser_unavailable()
    return None if reason is None else f"browser unavailable: {reason}"


def _expected(
    declared: model.Scenario, run: model.Scenario, kind: TargetKind
) -> model.Expectation | None:
    """The scenario's expectation; on the in-memory store instead of its Redis, ``fail``
    where it names the checks that catch the bug (``memory_store_fails``)."""
    if kind == "url":
        return None
    wanted = declared.expect.get(kind)
    if wanted is None or not run.stack.store == "memory" != declared.stack.store:
        return wanted
    # On memory instead of its Redis: fail where it names the checks that catch the bug; a
    # scenario about Redis's own faults is skipped there and expects nothing.
    return "fail" if declared.memory_store_fails else None


def bounds_of(scenario: model.Scenario) -> tuple[Bound, ...]:
    """The latency limits of the scenario's band checks, for the report's plots."""
    out = []
    for check in scenario.checks:
        if isinstance(check, model.TtftBand | model.ItlBand | model.E2eBand):
            for op, value in ((">=", check.min_ms), ("<=", check.max_ms)):
                if value is not None:
                    out.append(Bound(check.check, f"{check.check} {check.stat} {op}", value))
    return tuple(out)


def protocol_errors(streams: Sequence[StreamObservation]) -> str:
    """Frames the profile could not read, with the frame (a few, then a count)."""
    bad = [s for s in streams if s.error_code == "protocol_error"]
    shown = "; ".join(f"{s.key}: {s.error_message}" for s in bad[:SHOWN_PROTOCOL_ERRORS])
    more = len(bad) - SHOWN_PROTOCOL_ERRORS
    return shown + (f"; and {more} more streams" if more > 0 else "")


async def _run(
    scenario: model.Scenario,
    plan: RunPlan,
    target: Target,
    opts: RunOptions,
    live: Live,
    progress: Progress | None,
) -> RunObservation:
    from scenarios.stack import Stack, StackSpec

    env = {SERVER_ENV_PREFIX + k: v for k, v in scenario.stack.server_env.items()}
    env.setdefault(SERVER_ENV_PREFIX + "UPSTREAM_RETRY_SEED", str(plan.server_seed))
    if opts.server_pythonpath is not None:
        # A copy of the server's code (a mutant) found before the installed one; without
        # PYTHONSAFEPATH, `python -m` would put the working directory (a checkout) first.
        env["PYTHONPATH"] = opts.server_pythonpath
        env["PYTHONSAFEPATH"] = "1"
    mock_args = tuple(a for m in opts.mock_models for a in ("--model", m)) or ("--any-model",)
    spec = StackSpec(
        target=opts.target,
        nginx=scenario.stack.nginx,
        nginx_read_timeout_s=scenario.stack.nginx_read_timeout_s,
        nginx_binary=opts.nginx_binary,
        upstream_proxy=scenario.stack.upstream_proxy,
        downstream_proxy=scenario.stack.downstream_proxy,
        server_workers=scenario.stack.server_workers,
        store=scenario.stack.store,
        redis_binary=opts.redis_binary,
        provider=opts.provider,
        mock_seed=plan.mock_seed,
        mock_profile=scenario.mock.profile,
        mock_args=mock_args,
        provider_port=opts.mock_port,
        proxy_seed=plan.proxy_seed,
        toxiproxy_url=opts.toxiproxy_url,
        server_env=env if target.started else {},
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
        await _post_rules(http, stack.mock_url, scenario)
        if not target.started:
            await _check_reachable(http, stack.client_http_url)
        # /stats only where the target has it: elsewhere polling would be 404s in its logs.
        baseline = await fetch_stats(http, stack.server_url) if target.stats else None
        peak: dict[str, float] = {}
        sampler = asyncio.create_task(
            sample_stats(http, stack.server_url, peak, opts.stats_interval_s)
            if target.stats
            else asyncio.sleep(0)
        )
        request_model = opts.target_model or scenario.mock.model
        states: list[StreamState] = []
        try:
            await apply_at_start(plan, stack, http, live)
            live.t0 = time.perf_counter()
            note_started(plan, live)
            endpoints = Endpoints(stack.client_http_url, stack.client_ws_url)
            contexts = [
                ClientContext(
                    plan=c,
                    group=scenario.clients[c.group],
                    scenario=scenario,
                    profile=_profile_of(scenario.clients[c.group], target),
                    endpoints=endpoints,
                    live=live,
                    states=states,
                    model=request_model,
                    headers=opts.headers,
                )
                for c in plan.clients
            ]
            await _play(plan, contexts, stack, http, live, progress)
            note_unfired(plan, live)
            ledger = await settled_ledger(http, stack.mock_url, opts.settle_timeout_s)
            after = (
                await idle_stats(http, stack.server_url, baseline, scenario, opts.settle_timeout_s)
                if target.stats
                else None
            )
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        streams = await observe(http, stack.mock_url, states, ledger, live.t0, request_model)
    return RunObservation(
        streams=tuple(streams),
        ledger=tuple(ledger),
        stats_baseline=baseline,
        stats_after=after,
        stats_peak=peak,
        probes=tuple(live.probes),
    )


async def _play(
    plan: RunPlan,
    contexts: Sequence[ClientContext],
    stack: object,
    http: httpx.AsyncClient,
    live: Live,
    progress: Progress | None,
) -> None:
    """Run every client and the fault scheduler until the clients are done."""
    scheduler = asyncio.create_task(run_schedule(plan, stack, http, live))  # type: ignore[arg-type]
    clients = [asyncio.create_task(_client(ctx)) for ctx in contexts]
    states = contexts[0].states if contexts else []
    watcher = (
        asyncio.create_task(_progress(live, states, len(contexts), progress)) if progress else None
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
        # Shared client resources (the browser) go before the stack stops.
        await asyncio.gather(*(close() for close in live.closers), return_exceptions=True)
        live.closers.clear()
    if not scheduler.cancelled() and scheduler.exception() is not None:
        # A fault that could not be applied makes the run meaningless: say so.
        raise scheduler.exception()  # type: ignore[misc]


def _profile_of(group: model.ClientGroup, target: Target) -> Profile:
    """The target's profile, or the other built-in shape the group asks for."""
    return load_profile(group.profile) if group.profile is not None else target.profile


async def _client(ctx: ClientContext) -> None:
    plan: ClientPlan = ctx.plan
    if plan.start_delay_ms:
        await asyncio.sleep(plan.start_delay_ms / 1000)
    await driver_for(ctx.profile, ctx.group)(ctx)


async def _progress(
    live: Live, states: list[StreamState], clients: int, progress: Progress
) -> None:
    while True:
        done = sum(1 for s in states if s.records and s.last.done)
        progress(f"{done}/{len(states)} streams ended, {live.tokens()} tokens, {clients} clients")
        await asyncio.sleep(0.2)


async def _post_rules(http: httpx.AsyncClient, mock_url: str, scenario: model.Scenario) -> None:
    from scenarios.stack import StackError

    rules = scenario.mock.rules_to_post(scenario.rule_scope)
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
        raise TargetUnreachable(f"target {url} is unreachable: {exc!r}") from None

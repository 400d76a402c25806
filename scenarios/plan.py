"""The plan of a scenario run: everything decided in advance, as a pure function of the seed.

The fault schedule (each toxic and server event with its trigger and seeded delay) and each
client's timing and prompts. Two runs with the same seed get equal plans (compared with ``==``
in the tests), whatever the target: the target decides how a client talks, not when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scenarios import model
from scenarios.seeds import SeedTree

__all__ = ["ClientPlan", "PlannedAction", "RunPlan", "describe_plan", "plan_run"]

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


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class PlannedAction:
    """One fault or server event, with its trigger resolved and its seeded delay drawn."""

    label: str
    kind: Literal["add_toxic", "restart_server", "restart_redis", "kill_worker"]
    after_tokens: int | None
    after_ms: float | None  # None with after_tokens None: at start
    delay_ms: float  # seeded jitter added to the trigger
    proxy: str | None = None
    toxic: Mapping[str, Any] | None = None
    duration_ms: int | None = None
    worker: int | None = None  # kill_worker: which one, 1-based

    @property
    def at_start(self) -> bool:
        """Applied before any client starts (``after_ms: 0`` included): a fault meant to be
        there from the start must not race the first tokens."""
        no_trigger = self.after_tokens is None and not self.after_ms
        return no_trigger and self.delay_ms == 0


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


def plan_run(scenario: model.Scenario, seed: int) -> RunPlan:
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
                label=f"{event.do}{f' {event.worker}' if event.worker else ''} ({event.trigger})",
                kind=event.do,
                after_tokens=event.after_tokens,
                after_ms=event.after_ms,
                delay_ms=round(delay, 3),
                worker=event.worker,
            )
        )
    clients: list[ClientPlan] = []
    for g, group in enumerate(scenario.clients):
        name = scenario.group_name(g)
        transport = "browser" if group.kind == "browser" else group.transport
        for i in range(group.count):
            rng = tree.client(g, i)
            client_id = f"{name}-{i}"
            jitter = rng.uniform(0, group.start_jitter_ms) if group.start_jitter_ms else 0.0
            start = group.start_after_ms + jitter
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

"""The server under test: a built-in one the harness starts, or a URL, and its profile.

A target is the server plus the profile the clients use to talk to it. The built-in targets are
data like any other: ``reference`` is the reference server spoken to with profile ``v1``,
``naive`` the naive server with profile ``tutorial``; a URL target takes ``--target-profile``
(default ``v1``). What the target can do (its capabilities) is the profile's plus what comes
from the target itself: ``restartable`` when the harness starts it, ``stats`` when it serves the
reference server's ``/stats`` counters.

A scenario needs capabilities (:attr:`scenarios.model.Scenario.all_needs`); :func:`unmet`
says, in one line, why a target cannot run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scenarios.profiles import Profile, load_profile

__all__ = ["BUILTIN_TARGETS", "BuiltinServer", "Target", "TargetKind", "resolve_target", "unmet"]

TargetKind = Literal["reference", "naive", "url"]


@dataclass(frozen=True)
class BuiltinServer:
    module: str  # python -m MODULE --host --port --upstream
    profile: str
    stats: bool  # serves /stats with the reference server's counters
    ready_path: str | None = None  # answers 200 once its app started (else: its first line)
    workers: bool = False  # runs as several workers sharing a store (--store redis://...)


BUILTIN_TARGETS: dict[str, BuiltinServer] = {
    "reference": BuiltinServer(
        "reference_server", "v1", stats=True, ready_path="/healthz", workers=True
    ),
    "naive": BuiltinServer("reference_server.naive", "tutorial", stats=False),
}


@dataclass(frozen=True)
class Target:
    name: str  # "reference", "naive" or the URL
    profile: Profile
    stats: bool = False

    @property
    def kind(self) -> TargetKind:
        return self.name if self.name in BUILTIN_TARGETS else "url"  # type: ignore[return-value]

    @property
    def started(self) -> bool:
        """The harness starts (and can restart) this server."""
        return self.kind != "url"

    @property
    def capabilities(self) -> frozenset[str]:
        caps = set(self.profile.capabilities)
        if self.started:
            caps.add("restartable")
        if self.stats:
            caps.add("stats")
        builtin = BUILTIN_TARGETS.get(self.name)
        if builtin is not None and builtin.workers:
            caps.add("several_workers")
        return frozenset(caps)

    def describe(self) -> str:
        return f"{self.name} (profile {self.profile.name})"


def resolve_target(name: str, profile: str | Path | None = None, *, stats: bool = False) -> Target:
    """``name``: reference, naive or a URL; ``profile``: a built-in name or a file (default:
    the built-in target's own, ``v1`` for a URL); ``stats``: a URL target serves ``/stats``."""
    builtin = BUILTIN_TARGETS.get(name)
    spec = profile if profile is not None else (builtin.profile if builtin else "v1")
    return Target(
        name,
        load_profile(spec),
        stats=builtin.stats if builtin is not None else stats,
    )


# Why a missing capability stops a scenario, in words; {p} is the profile's name.
_REASONS = {
    "cancel_message": "needs a cancel message; profile {p} declares none",
    "resume": "needs stream resume; profile {p} declares none",
    "several_streams": "needs several streams on one connection told apart by id; "
    "profile {p} has no stream ids",
    "indexes": "needs token indexes; profile {p} has none",
    "error_codes": "needs protocol v1's error codes; profile {p} has none",
    "v1_http": "needs the reference HTTP stream API (SSE, polling, blocking of "
    "docs/protocol.md); profile {p} declares none",
    "client_id_in_url": "needs a client id in the URL; profile {p}'s url {u} has none",
    "resume_token": "needs resume tokens; profile {p} declares none",
    "v1_protocol": "probes protocol v1's messages; profile {p} speaks another protocol",
    "tool_calls": "needs tool calls in the stream; profile {p} reads none",
    "tutorial_shape": "speaks the tutorial's shape beside v1; profile {p} declares no such",
    "heartbeat": "needs a heartbeat the client can see; profile {p} declares none",
    "pong": "needs the client to answer app-level pings; profile {p} has none",
    "finish_reason": "needs the finish reason in the stream; profile {p} reads none",
    "usage": "needs the token usage in the stream; profile {p} reads none",
}


def unmet(needs: frozenset[str], target: Target) -> str | None:
    """Why ``target`` cannot give what ``needs`` asks for (the first reason), or None."""
    missing = needs - target.capabilities
    if not missing:
        return None
    for cap, reason in _REASONS.items():  # what the profile lacks, in a fixed order
        if cap in missing:
            return reason.format(p=target.profile.name, u=target.profile.url)
    if "stats" in missing:
        return "needs the server's /stats counters (the reference server's); this target has none"
    if "several_workers" in missing:
        return (
            "runs several server workers on a shared store, which the harness does for the "
            "reference server only"
        )
    if "restartable" in missing:
        return "restarts the server, which the harness cannot do to a URL target"
    return f"needs {', '.join(sorted(missing))}"

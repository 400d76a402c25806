"""The shipped catalogue: every file valid and the issue's list covered."""

from __future__ import annotations

import pytest

from scenarios.model import load_catalogue
from scenarios.targets import BUILTIN_TARGETS, resolve_target, unmet

# The scenarios the catalogue must have (issue 6), and what each is expected to show.
REQUIRED = {
    "concurrency",
    "mid_stream_cancel",
    "latency_injection",
    "bandwidth_limit",
    "jitter",
    "nginx_idle_timeout",
    "reconnect_resend",
    "resume_last_index",
    "upstream_429_then_success",
    "upstream_abort",
    "stalled_upstream",
    "slow_consumer",
    "sse_resume_nginx",
    "graceful_restart",
    "end_marker_in_answer",
}

# Flaws of the naive server (reference_server/naive.py) that a scenario must catch.
NAIVE_FLAWS = {
    "nginx_idle_timeout",  # no heartbeat
    "reconnect_resend",  # a resend starts a second generation
    "upstream_429_then_success",  # upstream errors are printed, the socket just stops
    "upstream_abort",
    "stalled_upstream",
    "end_marker_in_answer",  # the in-band [END] token
    "shared_client_id",  # the client id in the path is trusted
}


def test_catalogue_loads_and_covers_the_issue() -> None:
    names = {s.name for s in load_catalogue()}
    assert names >= REQUIRED


def test_every_scenario_passes_on_the_reference_and_naive_flaws_fail() -> None:
    catalogue = {s.name: s for s in load_catalogue()}
    for scenario in catalogue.values():
        assert scenario.expect.get("reference") == "pass", scenario.name
    for name in NAIVE_FLAWS:
        assert catalogue[name].expect.get("naive") == "fail", name


@pytest.mark.parametrize("name", BUILTIN_TARGETS)
def test_every_scenario_a_builtin_target_runs_says_what_it_expects(name: str) -> None:
    # `run --target naive --expectations` is only meaningful when no verdict goes unjudged.
    target = resolve_target(name)
    for s in load_catalogue():
        if unmet(s.all_needs, target) is None:
            assert name in s.expect, f"{s.name} runs on {name} but has no expectation for it"
        else:
            assert name not in s.expect, f"{s.name} is skipped on {name} but expects a verdict"


def test_scenarios_stay_small_enough_for_ci() -> None:
    # The whole suite should run in a minute or two on a shared 2-core box. A client's timeout
    # costs time only when a stream fails; slow_consumer's 150,000 tokens need 20 s under load.
    roomy = {"slow_consumer": 20.0}
    for s in load_catalogue():
        assert sum(g.count * g.messages for g in s.clients) <= 60, s.name
        assert all(g.timeout_s <= roomy.get(s.name, 10.0) for g in s.clients), s.name


def test_every_toxic_and_nginx_scenario_is_tagged() -> None:
    for s in load_catalogue():
        if s.stack.nginx:
            assert "nginx" in s.tags, s.name
        assert s.description.strip(), s.name


def test_only_the_reference_server_runs_several_workers() -> None:
    workers = [s for s in load_catalogue() if s.stack.several_workers]
    assert workers, "the catalogue has scenarios on several workers"
    for s in workers:
        assert "several_workers" in s.all_needs and {"nginx", "workers"} <= set(s.tags), s.name
        assert unmet(s.all_needs, resolve_target("naive")) is not None, s.name
        # each says which checks catch the bug when the workers share nothing (but the
        # faults of the shared store itself, which a run without Redis cannot have)
        faults = {e.do for e in s.events} & {"restart_redis", "kill_worker"}
        assert s.stack.store == "redis" and (bool(s.memory_store_fails) != bool(faults)), s.name
    for name in ("naive", "https://example.test"):
        reason = unmet(frozenset({"several_workers"}), resolve_target(name))
        assert reason is not None and "several server workers" in reason, reason
    assert unmet(frozenset({"several_workers"}), resolve_target("reference")) is None
